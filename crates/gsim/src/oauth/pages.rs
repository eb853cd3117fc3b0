//! Google's sign-in pages as gsim renders them.

use askama::Template;

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub headline: String,
    pub lead: String,
    /// "Error 400: redirect_uri_mismatch", the line users search for.
    pub code: String,
    pub explanation: String,
    pub details: Vec<(String, String)>,
}

impl ErrorPage {
    /// Google's page for a request it will not serve (the app's fault, not the user's).
    pub fn invalid_request(app: Option<&str>, error: &str, explanation: String) -> Box<Self> {
        let headline = match app {
            Some(app) => format!("Access blocked: {app}'s request is invalid"),
            None => "Access blocked: This app's request is invalid".to_string(),
        };
        Box::new(Self {
            status: 400,
            headline,
            lead: "You can't sign in because this app sent an invalid request. You can try again later, or contact the developer about this issue.".to_string(),
            code: format!("Error 400: {error}"),
            explanation,
            details: Vec::new(),
        })
    }

    pub fn invalid_client() -> Box<Self> {
        Box::new(Self {
            status: 401,
            headline: "Access blocked: Authorization Error".to_string(),
            lead: "The OAuth client was not found.".to_string(),
            code: "Error 401: invalid_client".to_string(),
            explanation: "If you are a developer of this app, check that the client_id in the request matches an OAuth client of your Google Cloud project.".to_string(),
            details: Vec::new(),
        })
    }

    pub fn redirect_uri_mismatch(details: Vec<(String, String)>) -> Box<Self> {
        Box::new(Self {
            details,
            ..*Self::invalid_request(
                None,
                "redirect_uri_mismatch",
                "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. If you're the app developer, register the redirect URI in the Google Cloud Console.".to_string(),
            )
        })
    }

    pub fn access_denied_testing(app: &str, details: Vec<(String, String)>) -> Box<Self> {
        Box::new(Self {
            status: 403,
            headline: format!(
                "Access blocked: {app} has not completed the Google verification process"
            ),
            lead: format!(
                "{app} has not completed the Google verification process. The app is currently being tested, and can only be accessed by developer-approved testers. If you think you should have access, contact the developer."
            ),
            code: "Error 403: access_denied".to_string(),
            explanation: String::new(),
            details,
        })
    }
}

pub struct ChooserAccount {
    pub email: String,
    pub name: String,
    pub initial: char,
    pub hinted: bool,
}

#[derive(Template)]
#[template(path = "chooser.html")]
pub struct ChooserPage {
    pub app: String,
    pub flow: String,
    pub accounts: Vec<ChooserAccount>,
}

#[derive(Template)]
#[template(path = "unverified.html")]
pub struct UnverifiedPage {
    pub app: String,
    pub flow: String,
    pub email: String,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage {
    pub app: String,
    pub flow: String,
    pub email: String,
    pub scopes: Vec<String>,
}
