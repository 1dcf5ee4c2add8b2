//! The admin page's guard: login with the admin token, the session cookie, the rate limit on
//! login attempts, the origin check, and forwarded-for headers that never stand in for auth.

use reqwest::StatusCode;
use reqwest::redirect::Policy;

use crate::support::inproc::{core, serve};

const TOKEN: &str = "admin-token-for-the-page";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn pages_need_a_login_that_is_rate_limited_and_same_origin() {
    let world = core(None, |_| {}).await;
    let hash = operator::http::api::token_hash(TOKEN);
    let served = serve(&world.core, Some(hash)).await;
    let http = client();
    let origin = format!("http://{}", served.addr);

    // No cookie: sent to the login page, even from 127.0.0.1 with forwarded-for headers.
    for path in ["/", "/instances", "/activity"] {
        let r = http
            .get(served.url(path))
            .header("X-Forwarded-For", "127.0.0.1")
            .header("X-Real-IP", "127.0.0.1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.headers()["location"], "/login");
    }
    // A login from another origin is refused before the token is even looked at.
    let cross = http
        .post(served.url("/login"))
        .header("Origin", "https://evil.example")
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    // A wrong token is rejected.
    let wrong = http
        .post(served.url("/login"))
        .header("Origin", &origin)
        .form(&[("token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // The right one sets an HttpOnly, SameSite=Strict cookie.
    let ok = http
        .post(served.url("/login"))
        .header("Origin", &origin)
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page = http
        .get(served.url("/"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("operator 0."));
    // A state-changing request with the cookie but from another origin is refused.
    let forged = http
        .post(served.url("/logout"))
        .header("Cookie", &session)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // Activity exports as JSON lines.
    let export = http
        .get(served.url("/activity?format=jsonl"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    // Two attempts so far (the cross-origin one never got that far); three more are allowed,
    // the sixth is refused even with the right token.
    for _ in 0..3 {
        let r = http
            .post(served.url("/login"))
            .header("Origin", &origin)
            .form(&[("token", "guess")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let sixth = http
        .post(served.url("/login"))
        .header("Origin", &origin)
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(sixth.status(), StatusCode::TOO_MANY_REQUESTS);
    // Logging out ends the session.
    let out = http
        .post(served.url("/logout"))
        .header("Cookie", &session)
        .header("Origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let after = http
        .get(served.url("/"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
}
