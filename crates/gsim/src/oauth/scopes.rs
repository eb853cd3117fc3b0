//! The scopes gsim knows, their long names and the words Google's consent page uses for them.

pub const OPENID: &str = "openid";
pub const USERINFO_EMAIL: &str = "https://www.googleapis.com/auth/userinfo.email";
pub const USERINFO_PROFILE: &str = "https://www.googleapis.com/auth/userinfo.profile";

const KNOWN: &[(&str, &str)] = &[
    (
        "https://mail.google.com/",
        "Read, compose, send, and permanently delete all your email from Gmail",
    ),
    (
        "https://www.googleapis.com/auth/gmail.send",
        "Send email on your behalf",
    ),
    (
        "https://www.googleapis.com/auth/gmail.readonly",
        "View your email messages and settings",
    ),
    (
        "https://www.googleapis.com/auth/gmail.modify",
        "Read, compose, and send emails from your Gmail account",
    ),
    (OPENID, "Associate you with your personal info on Google"),
    (
        USERINFO_EMAIL,
        "See your primary Google Account email address",
    ),
    (
        USERINFO_PROFILE,
        "See your personal info, including any personal info you've made publicly available",
    ),
];

/// Google grants `email` and `profile` under their long names.
pub fn normalize(scope: &str) -> &str {
    match scope {
        "email" => USERINFO_EMAIL,
        "profile" => USERINFO_PROFILE,
        other => other,
    }
}

pub fn description(scope: &str) -> Option<&'static str> {
    KNOWN.iter().find(|(s, _)| *s == scope).map(|(_, d)| *d)
}

/// Tokens with these scopes die when the user changes their password (google.md §1.8).
pub fn is_gmail(scope: &str) -> bool {
    scope == "https://mail.google.com/"
        || scope.starts_with("https://www.googleapis.com/auth/gmail.")
}
