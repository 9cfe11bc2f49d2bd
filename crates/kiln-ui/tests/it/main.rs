//! The web UI served by a real `kiln server`: its assets and routes over HTTP (`assets.rs`),
//! and the main flows in a real headless Chromium driven through WebDriver (`browser.rs`).

mod assets;
mod browser;
mod support;
