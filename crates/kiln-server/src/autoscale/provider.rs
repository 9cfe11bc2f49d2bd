//! Calls a node group's provider: the command (`PROGRAM ARGS... up N` or `down NODE...`,
//! the request in its environment) or the HTTP hook (the request `POST`ed as JSON). Either
//! answers nothing or `{"nodes": [...]}`; anything else, a failure, or no answer within the
//! timeout is an error naming what happened. A command past its timeout is killed with its
//! whole process group.

use std::process::Stdio;
use std::time::Duration;

use kiln_api::autoscale::{ProviderAnswer, ProviderRequest};
use tokio::io::AsyncReadExt;

use super::spec::Provider;

/// Most bytes of a provider's output kept (stdout is parsed, stderr quoted in errors).
const OUTPUT_MAX: usize = 64 * 1024;

/// Calls `provider` with `req`; the nodes it names, or why the call failed.
pub async fn call(
    provider: &Provider,
    req: &ProviderRequest,
    timeout: Duration,
) -> Result<ProviderAnswer, String> {
    match provider {
        Provider::Command { argv, env } => command(argv, env, req, timeout).await,
        Provider::Http { url, headers } => http(url, headers, req, timeout).await,
    }
}

/// Reads an answer: nothing, or JSON `{"nodes": [...]}`.
pub fn answer(text: &str) -> Result<ProviderAnswer, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(ProviderAnswer::default());
    }
    serde_json::from_str::<ProviderAnswer>(t).map_err(|e| {
        format!(
            "the provider answered something other than nothing or {{\"nodes\": [NAME, ...]}} ({e}): `{}`",
            shorten(t, 200)
        )
    })
}

fn shorten(t: &str, max: usize) -> String {
    let t = t.trim();
    if t.chars().count() <= max {
        return t.to_string();
    }
    let cut: String = t.chars().take(max).collect();
    format!("{cut}…")
}

/// The last few lines of `text` (a command's stderr), for an error.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(5);
    shorten(&lines[start..].join(" | "), 500)
}

async fn command(
    argv: &[String],
    env: &std::collections::BTreeMap<String, String>,
    req: &ProviderRequest,
    timeout: Duration,
) -> Result<ProviderAnswer, String> {
    let (program, args) = argv.split_first().ok_or("the provider has no command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).arg(&req.action);
    if req.action == "up" {
        cmd.arg(req.count.to_string());
    } else {
        cmd.args(&req.nodes);
    }
    cmd.envs(env)
        .env("KILN_SERVER", &req.server)
        .env("KILN_POOL_GROUP", &req.group)
        .env("KILN_POOL_COUNT", req.count.to_string())
        .env("KILN_POOL_NODES", req.nodes.join(" "))
        .env("KILN_AGENT_ARGS", req.agent_args.join(" "))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let shown = argv.join(" ");
    let mut child = cmd.spawn().map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Read both pipes only as long as the command runs: agents it starts in the background
    // may keep them open.
    let read = async {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut o = [0u8; 4096];
        let mut e = [0u8; 4096];
        let (mut o_open, mut e_open) = (true, true);
        while o_open || e_open {
            tokio::select! {
                n = stdout.read(&mut o), if o_open => match n {
                    Ok(0) | Err(_) => o_open = false,
                    Ok(n) => if out.len() < OUTPUT_MAX { out.extend_from_slice(&o[..n]) },
                },
                n = stderr.read(&mut e), if e_open => match n {
                    Ok(0) | Err(_) => e_open = false,
                    Ok(n) => if err.len() < OUTPUT_MAX { err.extend_from_slice(&e[..n]) },
                },
            }
        }
        (out, err)
    };
    let mut out = (Vec::new(), Vec::new());
    let status = tokio::time::timeout(timeout, async {
        tokio::pin!(read);
        let mut read_done = false;
        let status = tokio::select! {
            s = child.wait() => s,
            r = &mut read => {
                out = r;
                read_done = true;
                child.wait().await
            }
        };
        // Give the pipes a moment to drain after the command ended (what it started in
        // the background may hold them open: then its output is not waited for).
        if !read_done
            && let Ok(r) = tokio::time::timeout(Duration::from_millis(200), &mut read).await
        {
            out = r;
        }
        status
    })
    .await;
    let status = match status {
        Ok(s) => s.map_err(|e| format!("`{shown}`: {e}"))?,
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // The command's whole process group: what it started too.
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_raw(pid).expect("a child's pid is positive"),
                    rustix::process::Signal::KILL,
                );
            }
            let _ = child.kill().await;
            return Err(format!(
                "`{shown} {}` did not finish within {}s: killed",
                req.action,
                timeout.as_secs_f64()
            ));
        }
    };
    let stdout = String::from_utf8_lossy(&out.0);
    let stderr = String::from_utf8_lossy(&out.1);
    if !status.success() {
        let code = status.code().map_or_else(|| "a signal".to_string(), |c| format!("status {c}"));
        let said = tail(&stderr);
        let said = if said.is_empty() { String::new() } else { format!(": {said}") };
        return Err(format!("`{shown} {}` exited with {code}{said}", req.action));
    }
    answer(&stdout)
}

async fn http(
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    req: &ProviderRequest,
    timeout: Duration,
) -> Result<ProviderAnswer, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut post = client.post(url).json(req);
    for (k, v) in headers {
        post = post.header(k, v);
    }
    let resp = post.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("POST {url} ({}) got no answer within {}s", req.action, timeout.as_secs_f64())
        } else {
            format!("POST {url} ({}): {e}", req.action)
        }
    })?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| format!("POST {url}: reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "POST {url} ({}) answered {status}: {}",
            req.action,
            shorten(&body, 200)
        ));
    }
    answer(&body)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;

    /// A real HTTP hook on loopback: records what it got, answers as `mode` says.
    async fn hook(mode: &'static str) -> (String, Arc<Mutex<Vec<(HeaderMap, ProviderRequest)>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, Json(req): Json<ProviderRequest>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push((headers, req));
                    match mode {
                        "nodes" => (StatusCode::OK, r#"{"nodes":["i-0abc"]}"#.to_string()),
                        "empty" => (StatusCode::OK, String::new()),
                        "slow" => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            (StatusCode::OK, String::new())
                        }
                        _ => (StatusCode::SERVICE_UNAVAILABLE, "no capacity in eu-west-3".into()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, got)
    }

    fn request() -> ProviderRequest {
        ProviderRequest {
            action: "up".into(),
            group: "big".into(),
            count: 1,
            nodes: vec!["big-1".into()],
            server: "http://127.0.0.1:7171".into(),
            agent_args: vec!["--attribute".into(), "group=big".into()],
        }
    }

    #[tokio::test]
    async fn the_http_hook_gets_the_request_and_its_answer_or_failure_is_read() {
        let (url, got) = hook("nodes").await;
        let headers = std::collections::BTreeMap::from([("x-cloud-key".into(), "k1".into())]);
        let p = Provider::Http { url, headers };
        let answer = call(&p, &request(), Duration::from_secs(5)).await.unwrap();
        assert_eq!(answer.nodes, ["i-0abc"]);
        let (h, req) = got.lock().unwrap().remove(0);
        assert_eq!(req, request());
        assert_eq!(h["x-cloud-key"], "k1");

        let (url, _) = hook("empty").await;
        let p = Provider::Http { url, headers: Default::default() };
        assert_eq!(call(&p, &request(), Duration::from_secs(5)).await.unwrap().nodes.len(), 0);

        let (url, _) = hook("fail").await;
        let p = Provider::Http { url: url.clone(), headers: Default::default() };
        let e = call(&p, &request(), Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            e,
            format!("POST {url} (up) answered 503 Service Unavailable: no capacity in eu-west-3")
        );

        let (url, _) = hook("slow").await;
        let p = Provider::Http { url: url.clone(), headers: Default::default() };
        let e = call(&p, &request(), Duration::from_millis(300)).await.unwrap_err();
        assert_eq!(e, format!("POST {url} (up) got no answer within 0.3s"));
    }

    #[test]
    fn answers_are_nothing_or_a_list_of_nodes() {
        assert_eq!(answer("  \n").unwrap(), ProviderAnswer::default());
        assert_eq!(answer(r#"{"nodes":["a","b"]}"#).unwrap().nodes, ["a", "b"]);
        let e = answer("started 2 VMs").unwrap_err();
        assert!(e.contains("`started 2 VMs`"), "{e}");
        assert!(answer(r#"{"nodes":["a"],"extra":1}"#).is_err());
    }
}
