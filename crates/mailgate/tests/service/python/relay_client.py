"""Sends through mailgate's relay as Odoo's ir.mail_server does, with Python's smtplib:
SMTP(host, port), starttls(), login(), then send_message() (or sendmail() with the bytes as they
are). One JSON argument; prints one JSON line per message: the reply code, or the refusal.

  {"host", "port", "cafile", "user", "password", "mechanism": "PLAIN" | "LOGIN",
   "sessions": 1, "from", "to": [...], "messages": ["path", ...], "odoo": true,
   "test_connection": true, "implicit_tls": true}

With "test_connection", it does what Flectra's "Test Connection" does
(ir.mail_server.test_smtp_connection): MAIL FROM, RCPT TO, DATA expecting 354, then closes the
connection without sending anything.
"""
import json
import smtplib
import ssl
import sys
from email import message_from_bytes, policy

args = json.loads(sys.argv[1])
context = ssl.create_default_context(cafile=args["cafile"])
for _ in range(args.get("sessions", 1)):
    if args.get("implicit_tls"):
        smtp = smtplib.SMTP_SSL(args["host"], args["port"], timeout=30, context=context)
    else:
        smtp = smtplib.SMTP(args["host"], args["port"], timeout=30)
        smtp.starttls(context=context)
    try:
        if args.get("mechanism", "PLAIN") == "LOGIN":
            smtp.ehlo()
            smtp.user, smtp.password = args["user"], args["password"]
            smtp.auth("LOGIN", smtp.auth_login)
        else:
            smtp.login(args["user"], args["password"])
    except smtplib.SMTPResponseException as e:
        print(json.dumps({"auth": e.smtp_code, "text": e.smtp_error.decode()}))
        smtp.quit()
        continue
    if args.get("test_connection"):
        code, _ = smtp.mail(args["from"])
        rcpt, _ = smtp.rcpt(args["to"][0])
        smtp.putcmd("data")
        data, _ = smtp.getreply()
        print(json.dumps({"mail": code, "rcpt": rcpt, "data": data}))
        smtp.close()
        continue
    for path in args.get("messages", []):
        raw = open(path, "rb").read()
        try:
            if args.get("odoo"):
                message = message_from_bytes(raw, policy=policy.SMTP)
                smtp.send_message(message, args["from"], args["to"])
            else:
                smtp.sendmail(args["from"], args["to"], raw)
            print(json.dumps({"code": 250}))
        except smtplib.SMTPResponseException as e:
            print(json.dumps({"code": e.smtp_code, "text": e.smtp_error.decode()}))
        except smtplib.SMTPRecipientsRefused as e:
            print(json.dumps({"refused": {k: v[0] for k, v in e.recipients.items()}}))
    smtp.quit()
