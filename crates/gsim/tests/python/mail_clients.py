"""Python's own smtplib and imaplib against gsim: independent clients, not ours.

Usage: mail_clients.py <case> <host> <port> <ca_cert> <user> <access_token> [recipient]
Prints one JSON line with what the client saw; exits non-zero only on an unexpected error.
"""
import imaplib
import json
import smtplib
import ssl
import sys


def auth_string(user, token):
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def main():
    case, host, port, ca, user, token = sys.argv[1:7]
    port = int(port)
    # Verification stays on: the client trusts gsim's CA, as mailgate's tests do.
    context = ssl.create_default_context(cafile=ca)
    if case == "smtp-send":
        rcpt = sys.argv[7]
        with smtplib.SMTP(host, port, timeout=20) as smtp:
            smtp.ehlo("python.example")
            smtp.starttls(context=context)
            smtp.ehlo("python.example")
            code, text = smtp.auth("XOAUTH2", lambda challenge=None: auth_string(user, token))
            refused = smtp.sendmail(user, [rcpt], f"From: {user}\r\nTo: {rcpt}\r\nSubject: from smtplib\r\n\r\nHello from Python.\r\n")
            print(json.dumps({"auth": code, "auth_text": text.decode(), "refused": refused}))
    elif case == "smtp-bad-token":
        with smtplib.SMTP_SSL(host, port, context=context, timeout=20) as smtp:
            smtp.ehlo("python.example")
            try:
                smtp.auth("XOAUTH2", lambda challenge=None: auth_string(user, token))
            except smtplib.SMTPAuthenticationError as e:
                print(json.dumps({"code": e.smtp_code, "error": e.smtp_error.decode()}))
                return
            print(json.dumps({"code": None}))
    elif case == "imap-fetch":
        imap = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=20)
        typ, data = imap.authenticate("XOAUTH2", lambda challenge: auth_string(user, token).encode())
        imap.select("INBOX")
        typ, uids = imap.uid("SEARCH", None, "ALL")
        last = uids[0].split()[-1]
        typ, fetched = imap.uid("FETCH", last, "(BODY.PEEK[])")
        body = fetched[0][1].decode()
        imap.logout()
        print(json.dumps({"auth": typ, "auth_text": data[0].decode(), "uids": uids[0].decode(), "body": body}))
    elif case == "imap-bad-token":
        imap = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=20)
        try:
            imap.authenticate("XOAUTH2", lambda challenge: auth_string(user, token).encode())
        except imaplib.IMAP4.error as e:
            print(json.dumps({"error": str(e)}))
            return
        print(json.dumps({"error": None}))
    else:
        raise SystemExit(f"unknown case {case}")


if __name__ == "__main__":
    main()
