//! The authorization endpoint, its pages and the token endpoint (google.md §1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::support::*;

const MAIL: &str = "https://mail.google.com/";

fn auth_query<'a>(client: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut q = vec![
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", MAIL),
        ("access_type", "offline"),
    ];
    for (key, value) in extra {
        match q.iter_mut().find(|(k, _)| k == key) {
            Some(pair) => pair.1 = value,
            None => q.push((key, value)),
        }
    }
    q
}

async fn auth_page(gsim: &gsim::Gsim, query: &[(&str, &str)]) -> (u16, String) {
    let response = http()
        .get(format!("{}/o/oauth2/v2/auth", gsim.endpoints().http))
        .query(query)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn missing_parameters_get_googles_invalid_request_page() {
    let gsim = start().await;
    let (status, html) = auth_page(&gsim, &[("redirect_uri", REDIRECT)]).await;
    assert_eq!(status, 400);
    assert!(html.contains("Error 400: invalid_request"));
    assert!(html.contains("Missing required parameter: client_id"));

    let mut query = auth_query(WEB_CLIENT, &[]);
    query.retain(|(k, _)| *k != "scope");
    let (status, html) = auth_page(&gsim, &query).await;
    assert_eq!(status, 400);
    assert!(html.contains("Missing required parameter: scope"));

    let (status, html) = auth_page(
        &gsim,
        &auth_query(WEB_CLIENT, &[("scope", "https://example.com/nope")]),
    )
    .await;
    assert_eq!(status, 400, "{html}");
    assert!(html.contains("Error 400: invalid_scope"));
}

#[tokio::test]
async fn unknown_client_gets_invalid_client_401() {
    let gsim = start().await;
    let (status, html) =
        auth_page(&gsim, &auth_query("nobody.apps.googleusercontent.com", &[])).await;
    assert_eq!(status, 401);
    assert!(html.contains("Error 401: invalid_client"));
    assert!(html.contains("The OAuth client was not found."));
}

#[tokio::test]
async fn unregistered_redirect_uri_gets_mismatch_with_request_details() {
    let gsim = start().await;
    let wrong = "http://mail.example.com/google_gmail/confirm";
    let (status, html) =
        auth_page(&gsim, &auth_query(WEB_CLIENT, &[("redirect_uri", wrong)])).await;
    assert_eq!(status, 400);
    assert!(html.contains("Error 400: redirect_uri_mismatch"));
    assert!(html.contains("register the redirect URI in the Google Cloud Console"));
    assert!(html.contains("Request details"));
    assert!(html.contains(&format!("redirect_uri={wrong}")));
}

#[tokio::test]
async fn desktop_client_refuses_an_https_callback_but_takes_loopback() {
    let gsim = start().await;
    let (status, html) = auth_page(&gsim, &auth_query(DESKTOP_CLIENT, &[])).await;
    assert_eq!(status, 400, "seed FAQ 'Application Type'");
    assert!(html.contains("Error 400: redirect_uri_mismatch"));

    let (status, html) = auth_page(
        &gsim,
        &auth_query(
            DESKTOP_CLIENT,
            &[("redirect_uri", "http://127.0.0.1:53682/")],
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("Choose an account"));
}

#[tokio::test]
async fn testing_app_refuses_a_user_who_is_not_a_test_user() {
    let gsim = start().await;
    let query = auth_query(TESTING_CLIENT, &[("state", "s1")]);
    let (status, html) = auth_page(&gsim, &query).await;
    assert_eq!(status, 200);
    let flow = hidden(&html, "flow");
    let response = http()
        .post(format!("{}/o/oauth2/v2/auth/choose", gsim.endpoints().http))
        .form(&[("flow", flow.as_str()), ("email", BOB)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let html = response.text().await.unwrap();
    assert!(html.contains("Error 403: access_denied"));
    assert!(html.contains("Testing App has not completed the Google verification process"));
    assert!(html.contains("can only be accessed by developer-approved testers"));
    assert!(html.contains("flowName=GeneralOAuthFlow"));
    assert!(html.contains(&format!("client_id={TESTING_CLIENT}")));
}

#[tokio::test]
async fn full_flow_returns_state_byte_exact_with_code_scope_authuser_prompt() {
    let gsim = start().await;
    // Flectra's state is JSON; every byte must come back.
    let state = r#"{"model": "ir.mail_server", "id": 7, "csrf_token": "a+b/c=d&e?f"}"#;
    let query = auth_query(
        TESTING_CLIENT,
        &[
            ("state", state),
            ("prompt", "consent"),
            ("login_hint", ALICE),
        ],
    );
    let (status, html) = auth_page(&gsim, &query).await;
    assert_eq!(status, 200);
    assert!(html.contains("to continue to <b>Testing App</b>"));
    let first_account = html.find("data-email=").unwrap();
    assert!(
        html[first_account..].starts_with(&format!("data-email=\"{ALICE}\"")),
        "login_hint comes first"
    );
    assert!(html.contains("Suggested by the app"));

    let redirect = consent(&gsim, &query, ALICE).await;
    assert!(
        redirect.starts_with(&format!("{REDIRECT}?state=")),
        "{redirect}"
    );
    assert_eq!(param(&redirect, "state").as_deref(), Some(state));
    assert!(param(&redirect, "code").unwrap().starts_with("4/0A"));
    assert_eq!(param(&redirect, "scope").as_deref(), Some(MAIL));
    assert_eq!(param(&redirect, "authuser").as_deref(), Some("0"));
    assert_eq!(param(&redirect, "prompt").as_deref(), Some("consent"));
}

#[tokio::test]
async fn consent_page_lists_scopes_and_cancel_redirects_access_denied() {
    let gsim = start().await;
    let query = auth_query(
        WEB_CLIENT,
        &[
            ("state", "xyz"),
            ("scope", "https://mail.google.com/ openid email"),
        ],
    );
    let (_, html) = auth_page(&gsim, &query).await;
    let flow = hidden(&html, "flow");
    let base = &gsim.endpoints().http;
    let consent = http()
        .post(format!("{base}/o/oauth2/v2/auth/choose"))
        .form(&[("flow", flow.as_str()), ("email", BOB)])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(consent.contains("Web App wants access to your Google Account"));
    assert!(
        consent.contains("Read, compose, send, and permanently delete all your email from Gmail")
    );
    assert!(consent.contains("See your primary Google Account email address"));
    let cancel = http()
        .post(format!("{base}/o/oauth2/v2/auth/consent"))
        .form(&[("flow", flow.as_str()), ("action", "deny")])
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 302);
    assert_eq!(
        location(&cancel),
        format!("{REDIRECT}?error=access_denied&state=xyz")
    );
}

async fn code_for(gsim: &gsim::Gsim, client: &str, extra: &[(&str, &str)]) -> String {
    let redirect = consent(gsim, &auth_query(client, extra), ALICE).await;
    param(&redirect, "code").expect("code")
}

fn exchange<'a>(code: &'a str, client: &'a str, secret: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", client),
        ("client_secret", secret),
        ("redirect_uri", REDIRECT),
    ]
}

#[tokio::test]
async fn code_exchange_answers_like_google_with_its_headers() {
    let gsim = start().await;
    let code = code_for(&gsim, TESTING_CLIENT, &[]).await;
    let response = http()
        .post(format!("{}/token", gsim.endpoints().http))
        .form(&exchange(&code, TESTING_CLIENT, TESTING_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers();
    assert_eq!(h["content-type"], "application/json; charset=utf-8");
    assert_eq!(
        h["cache-control"],
        "no-cache, no-store, max-age=0, must-revalidate"
    );
    assert_eq!(h["pragma"], "no-cache");
    assert_eq!(h["expires"], "Mon, 01 Jan 1990 00:00:00 GMT");
    assert_eq!(h["server"], "scaffolding on HTTPServer2");
    assert!(h.contains_key("date"));
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));
    assert!(body["refresh_token"].as_str().unwrap().starts_with("1//0"));
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], MAIL);
    assert_eq!(body["refresh_token_expires_in"], 604799, "Testing app");
    assert!(body.get("id_token").is_none(), "no openid scope");
}

#[tokio::test]
async fn production_app_tokens_carry_no_refresh_expiry_and_vary_in_length() {
    let gsim = start().await;
    let code = code_for(&gsim, WEB_CLIENT, &[]).await;
    let (status, body) = token_request(&gsim, &exchange(&code, WEB_CLIENT, WEB_SECRET)).await;
    assert_eq!(status, 200);
    assert!(body.get("refresh_token_expires_in").is_none());
    let lengths: std::collections::BTreeSet<usize> =
        (0..20).map(|_| mail_token(&gsim, BOB).len()).collect();
    assert!(
        lengths.len() > 1,
        "access tokens must vary in length: {lengths:?}"
    );
}

#[tokio::test]
async fn client_secret_basic_is_accepted() {
    let gsim = start().await;
    let code = code_for(&gsim, WEB_CLIENT, &[]).await;
    let response = http()
        .post(format!("{}/token", gsim.endpoints().http))
        .basic_auth(WEB_CLIENT, Some(WEB_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn refresh_token_only_on_first_consent_or_prompt_consent() {
    let gsim = start().await;
    let first = code_for(&gsim, WEB_CLIENT, &[]).await;
    let (_, body) = token_request(&gsim, &exchange(&first, WEB_CLIENT, WEB_SECRET)).await;
    assert!(body.get("refresh_token").is_some(), "first consent");

    // Second time: Google skips the consent page and sends no refresh token.
    let redirect = consent(&gsim, &auth_query(WEB_CLIENT, &[]), ALICE).await;
    assert_eq!(param(&redirect, "prompt").as_deref(), Some("none"));
    let code = param(&redirect, "code").unwrap();
    let (_, body) = token_request(&gsim, &exchange(&code, WEB_CLIENT, WEB_SECRET)).await;
    assert!(body.get("refresh_token").is_none(), "{body}");

    let code = code_for(&gsim, WEB_CLIENT, &[("prompt", "consent")]).await;
    let (_, body) = token_request(&gsim, &exchange(&code, WEB_CLIENT, WEB_SECRET)).await;
    assert!(body.get("refresh_token").is_some(), "prompt=consent");

    let redirect = consent(
        &gsim,
        &auth_query(
            WEB_CLIENT,
            &[("access_type", "online"), ("prompt", "consent")],
        ),
        ALICE,
    )
    .await;
    let code = param(&redirect, "code").unwrap();
    let (_, body) = token_request(&gsim, &exchange(&code, WEB_CLIENT, WEB_SECRET)).await;
    assert!(
        body.get("refresh_token").is_none(),
        "online access never gets one"
    );
}

#[tokio::test]
async fn pkce_s256_and_plain_are_checked() {
    let gsim = start().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    let extra = [
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];

    let code = code_for(&gsim, WEB_CLIENT, &extra).await;
    let (status, body) = token_request(&gsim, &exchange(&code, WEB_CLIENT, WEB_SECRET)).await;
    assert_eq!(
        (
            status,
            body["error"].as_str(),
            body["error_description"].as_str()
        ),
        (400, Some("invalid_grant"), Some("Missing code verifier."))
    );

    let mut form = exchange(&code, WEB_CLIENT, WEB_SECRET);
    form.push((
        "code_verifier",
        "wrong-verifier-wrong-verifier-wrong-verifier",
    ));
    let (status, body) = token_request(&gsim, &form).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("Invalid code verifier."))
    );

    let mut form = exchange(&code, WEB_CLIENT, WEB_SECRET);
    form.push(("code_verifier", verifier));
    let (status, _) = token_request(&gsim, &form).await;
    assert_eq!(status, 200);

    let code = code_for(
        &gsim,
        WEB_CLIENT,
        &[
            ("code_challenge", verifier),
            ("code_challenge_method", "plain"),
        ],
    )
    .await;
    let mut form = exchange(&code, WEB_CLIENT, WEB_SECRET);
    form.push(("code_verifier", verifier));
    assert_eq!(token_request(&gsim, &form).await.0, 200);
}

fn assert_error(result: (u16, Value), status: u16, error: &str, description: &str) {
    assert_eq!(result.0, status, "{}", result.1);
    assert_eq!(result.1["error"], error, "{}", result.1);
    assert_eq!(result.1["error_description"], description, "{}", result.1);
}

#[tokio::test]
async fn reused_code_is_invalid_grant_bad_request() {
    let gsim = start().await;
    let code = code_for(&gsim, WEB_CLIENT, &[]).await;
    let form = exchange(&code, WEB_CLIENT, WEB_SECRET);
    assert_eq!(token_request(&gsim, &form).await.0, 200);
    assert_error(
        token_request(&gsim, &form).await,
        400,
        "invalid_grant",
        "Bad Request",
    );
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let gsim = start().await;
    let code = code_for(&gsim, WEB_CLIENT, &[]).await;
    gsim.world().advance_clock(11 * 60);
    assert_error(
        token_request(&gsim, &exchange(&code, WEB_CLIENT, WEB_SECRET)).await,
        400,
        "invalid_grant",
        "Bad Request",
    );
}

#[tokio::test]
async fn garbage_refresh_token_is_invalid_grant_bad_request() {
    let gsim = start().await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "1//0garbage"),
        ("client_id", WEB_CLIENT),
        ("client_secret", WEB_SECRET),
    ];
    assert_error(
        token_request(&gsim, &form).await,
        400,
        "invalid_grant",
        "Bad Request",
    );
}

#[tokio::test]
async fn wrong_client_secret_is_401_unauthorized() {
    let gsim = start().await;
    let code = code_for(&gsim, WEB_CLIENT, &[]).await;
    assert_error(
        token_request(&gsim, &exchange(&code, WEB_CLIENT, "GOCSPX-wrong")).await,
        401,
        "invalid_client",
        "Unauthorized",
    );
}

#[tokio::test]
async fn unknown_client_id_is_401_not_found() {
    let gsim = start().await;
    assert_error(
        token_request(
            &gsim,
            &exchange("4/0Ax", "999-nobody.apps.googleusercontent.com", "x"),
        )
        .await,
        401,
        "invalid_client",
        "The OAuth client was not found.",
    );
}

#[tokio::test]
async fn refresh_token_of_another_client_is_unauthorized_client() {
    let gsim = start().await;
    let refresh = tokens(&gsim, WEB_CLIENT, ALICE, &[MAIL])["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", TESTING_CLIENT),
        ("client_secret", TESTING_SECRET),
    ];
    assert_error(
        token_request(&gsim, &form).await,
        401,
        "unauthorized_client",
        "Unauthorized",
    );
}

#[tokio::test]
async fn different_redirect_uri_at_exchange_is_redirect_uri_mismatch() {
    let gsim = start().await;
    let code = code_for(&gsim, WEB_CLIENT, &[]).await;
    let mut form = exchange(&code, WEB_CLIENT, WEB_SECRET);
    form.retain(|(k, _)| *k != "redirect_uri");
    form.push(("redirect_uri", "https://mail.example.com/other"));
    assert_error(
        token_request(&gsim, &form).await,
        400,
        "redirect_uri_mismatch",
        "Bad Request",
    );
}

#[tokio::test]
async fn missing_code_is_invalid_request() {
    let gsim = start().await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", WEB_CLIENT),
        ("client_secret", WEB_SECRET),
        ("redirect_uri", REDIRECT),
    ];
    assert_error(
        token_request(&gsim, &form).await,
        400,
        "invalid_request",
        "Missing required parameter: code",
    );
}

#[tokio::test]
async fn missing_client_id_is_could_not_determine_client() {
    let gsim = start().await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "4/0Ax"),
        ("redirect_uri", REDIRECT),
    ];
    assert_error(
        token_request(&gsim, &form).await,
        400,
        "invalid_request",
        "Could not determine client ID from request.",
    );
}

#[tokio::test]
async fn missing_grant_type_or_json_body_is_unsupported_grant_type() {
    let gsim = start().await;
    let form = [
        ("code", "4/0Ax"),
        ("client_id", WEB_CLIENT),
        ("client_secret", WEB_SECRET),
    ];
    assert_error(
        token_request(&gsim, &form).await,
        400,
        "unsupported_grant_type",
        "Invalid grant_type: ",
    );

    let response = http()
        .post(format!("{}/token", gsim.endpoints().http))
        .json(&serde_json::json!({"grant_type": "authorization_code", "code": "x"}))
        .send()
        .await
        .unwrap();
    let result = (response.status().as_u16(), response.json().await.unwrap());
    assert_error(
        result,
        400,
        "unsupported_grant_type",
        "Invalid grant_type: ",
    );
}

#[tokio::test]
async fn refresh_grant_ignores_flectras_redirect_uri_and_returns_no_refresh_token() {
    let gsim = start().await;
    let first = tokens(&gsim, TESTING_CLIENT, ALICE, &[MAIL]);
    let refresh = first["refresh_token"].as_str().unwrap().to_string();
    // A Testing app's refresh token lives 7 days from consent: an hour later, an hour less.
    assert_eq!(first["refresh_token_expires_in"], 604799);
    gsim.world().advance_clock(3600);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", TESTING_CLIENT),
        ("client_secret", TESTING_SECRET),
        (
            "redirect_uri",
            "https://flectra.example.com/google_gmail/confirm",
        ),
    ];
    let (status, body) = token_request(&gsim, &form).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));
    assert!(
        body.get("refresh_token").is_none(),
        "refresh tokens are not rotated"
    );
    // The wall clock also runs between the two requests (a second boundary may pass).
    let left = body["refresh_token_expires_in"].as_i64().unwrap();
    assert!(
        (604799 - 3600 - 5..=604799 - 3600).contains(&left),
        "the refresh did not restart the 7 days: {left}"
    );
}

#[tokio::test]
async fn openid_email_adds_an_id_token_verifiable_with_the_published_jwks() {
    let gsim = start().await;
    let query = auth_query(
        WEB_CLIENT,
        &[
            ("scope", "https://mail.google.com/ openid email"),
            ("nonce", "n-0S6"),
        ],
    );
    let redirect = consent(&gsim, &query, ALICE).await;
    assert_eq!(
        param(&redirect, "scope").as_deref(),
        Some("https://mail.google.com/ openid https://www.googleapis.com/auth/userinfo.email")
    );
    let code = param(&redirect, "code").unwrap();
    let (status, body) = token_request(&gsim, &exchange(&code, WEB_CLIENT, WEB_SECRET)).await;
    assert_eq!(status, 200);
    let id_token = body["id_token"].as_str().unwrap();

    let base = &gsim.endpoints().http;
    let discovery: Value = http()
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["token_endpoint"], format!("{base}/token"));
    assert_eq!(
        discovery["code_challenge_methods_supported"],
        serde_json::json!(["plain", "S256"])
    );
    let jwks: Value = http()
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];

    let parts: Vec<&str> = id_token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], key["kid"]);
    let public = ring::signature::RsaPublicKeyComponents {
        n: URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap(),
        e: URL_SAFE_NO_PAD.decode(key["e"].as_str().unwrap()).unwrap(),
    };
    public
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .expect("signature verifies");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["email"], ALICE);
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["aud"], WEB_CLIENT);
    assert_eq!(claims["iss"], "https://accounts.google.com");
    assert_eq!(claims["nonce"], "n-0S6");

    let info: Value = http()
        .get(format!("{base}/oauth2/v3/userinfo"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["email"], ALICE);
}

#[tokio::test]
async fn revocation_of_an_access_token_takes_its_refresh_token_and_unknown_is_400() {
    let gsim = start().await;
    let issued = tokens(&gsim, WEB_CLIENT, ALICE, &[MAIL]);
    let access = issued["access_token"].as_str().unwrap();
    let refresh = issued["refresh_token"].as_str().unwrap();
    let revoke = format!("{}/revoke", gsim.endpoints().http);
    let response = http()
        .post(&revoke)
        .query(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("client_id", WEB_CLIENT),
        ("client_secret", WEB_SECRET),
    ];
    assert_error(
        token_request(&gsim, &form).await,
        400,
        "invalid_grant",
        "Token has been expired or revoked.",
    );

    let response = http()
        .post(&revoke)
        .form(&[("token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn token_endpoint_faults_answer_5xx_then_recover_and_stall() {
    let gsim = start().await;
    gsim.world().arm_token_fault(gsim::TokenFault::Status {
        status: 503,
        count: 1,
    });
    let refresh = tokens(&gsim, WEB_CLIENT, ALICE, &[MAIL])["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", WEB_CLIENT),
        ("client_secret", WEB_SECRET),
    ];
    assert_eq!(token_request(&gsim, &form).await.0, 503);
    assert_eq!(token_request(&gsim, &form).await.0, 200);

    gsim.world().arm_token_fault(gsim::TokenFault::Stall {
        seconds: 0.3,
        count: 1,
    });
    let started = std::time::Instant::now();
    assert_eq!(token_request(&gsim, &form).await.0, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));

    let counters = gsim.world().counters();
    assert_eq!(counters.token_requests["refresh_token"]["http_503"], 1);
    assert_eq!(counters.token_requests["refresh_token"]["ok"], 2);
}
