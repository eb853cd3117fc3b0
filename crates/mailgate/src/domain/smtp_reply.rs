//! SMTP replies and what they mean to the person reading them. The reply itself and the stage
//! of a session are the protocol crate's; the advice is mailgate's.

pub use mailgate_smtp::{Reply, Stage};

/// The one-sentence fix for a refusal at `stage`, where mailgate knows one: Gmail's replies read
/// as what to do in mailgate.
pub fn advice(reply: &Reply, stage: Stage) -> Option<&'static str> {
    let enhanced = reply.enhanced().unwrap_or_default();
    Some(match (reply.code, enhanced, stage) {
        (535, _, _) | (534, _, _) => {
            "Google refused the access token for this Username. Click \"Connect your Gmail account\" again, signing in as the Username; if it still fails, make sure the Username is the Google account you authorize."
        }
        (530, "5.7.0", _) => {
            "The server wants STARTTLS before anything else: set Connection security to STARTTLS (port 587)."
        }
        (530, _, _) => {
            "The server wants authentication first: for Gmail, choose \"Gmail OAuth\" and connect the account."
        }
        (421, _, _) | (450, _, _) | (451, _, _) => {
            "Gmail is slowing this account down for now (a temporary refusal). Wait a few minutes and test again; mailgate's queue retries such replies by itself."
        }
        (454, _, _) => {
            "Google saw too many logins for this account and paused them. Wait a few minutes before testing again."
        }
        (550, "5.4.5", _) => {
            "The account hit Gmail's daily sending limit (500 messages for Gmail, 2,000 for Workspace). It frees up within 24 hours."
        }
        (552, "5.2.3", _) => {
            "The message is larger than Gmail accepts (about 25 MB of attachments)."
        }
        (504, _, Stage::Auth) => {
            "This server does not offer XOAUTH2: check the SMTP host (smtp.gmail.com) and port."
        }
        (_, _, Stage::RcptTo) => {
            "The server refused the test recipient: check \"Test recipient\" in Settings."
        }
        (_, _, Stage::MailFrom) => {
            "The server refused the sender: for Gmail, the Username must be the account itself or one of its \"Send mail as\" addresses."
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, lines: &[&str]) -> Reply {
        Reply::new(code, lines)
    }

    #[test]
    fn enhanced_codes_and_text() {
        let r = reply(
            535,
            &[
                "5.7.8 Username and Password not accepted. Learn more at",
                "5.7.8 https://support.google.com/mail/?p=BadCredentials x - gsmtp",
            ],
        );
        assert_eq!(r.enhanced(), Some("5.7.8"));
        assert_eq!(
            r.text(),
            "535 5.7.8 Username and Password not accepted. Learn more at\n535 5.7.8 https://support.google.com/mail/?p=BadCredentials x - gsmtp"
        );
        assert!(
            advice(&r, Stage::Auth)
                .unwrap()
                .contains("Connect your Gmail account")
        );
        assert_eq!(reply(250, &["OK"]).enhanced(), None);
        assert!(
            advice(
                &reply(550, &["5.4.5 Daily user sending quota exceeded."]),
                Stage::MailFrom
            )
            .unwrap()
            .contains("daily sending limit")
        );
        assert!(reply(451, &["4.4.2 Timeout"]).is_temporary());
    }
}
