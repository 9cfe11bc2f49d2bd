//! The web UI served by a real `kiln server`: its assets and routes over HTTP (`assets.rs`),
//! the main flows in a real headless Chromium driven through WebDriver (`browser.rs`), and the
//! modules type-checked by TypeScript against the API's generated types (`types.rs`).

mod assets;
mod browser;
mod support;
mod types;
