"""Writes an email-oauth2-proxy configuration for the relay benchmark: one SMTP server in front
of gsim (STARTTLS upstream), one account whose tokens are already stored, encrypted with
emailproxy's own Cryptographer under the password the clients will log in with, as the proxy
leaves them after its first interactive authorisation.

  python seed.py CONFIG_FILE JSON  (JSON: local_port, gsim_smtp_port, gsim_http, account,
                                    password, client_id, client_secret, access_token,
                                    refresh_token)
"""
import configparser
import json
import sys
import time

import emailproxy

path, args = sys.argv[1], json.loads(sys.argv[2])
config = configparser.ConfigParser()
config["SMTP-%d" % args["local_port"]] = {
    "server_address": "127.0.0.1",
    "server_port": str(args["gsim_smtp_port"]),
    "server_starttls": "True",
    "local_address": "127.0.0.1",
}
account = args["account"]
config[account] = {
    "permission_url": args["gsim_http"] + "/o/oauth2/v2/auth",
    "token_url": args["gsim_http"] + "/token",
    "oauth2_scope": "https://mail.google.com/",
    "redirect_uri": "http://localhost",
    "client_id": args["client_id"],
    "client_secret": args["client_secret"],
}
crypto = emailproxy.Cryptographer(config, account, args["password"])
config[account].update({
    "token_salt": crypto.salt,
    "token_iterations": str(crypto.iterations),
    "access_token": crypto.encrypt(args["access_token"]),
    "access_token_expiry": str(int(time.time()) + 3000),
    "refresh_token": crypto.encrypt(args["refresh_token"]),
})
with open(path, "w") as f:
    config.write(f)
