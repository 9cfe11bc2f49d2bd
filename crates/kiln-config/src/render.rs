//! Rendering: every config item's template with one set of values, to files.
//!
//! One minijinja environment per render, holding every item of the application (so an item may
//! `{% include %}` or `{% import %}` another), set up for config files rather than HTML:
//! auto-escape off for every file name (minijinja would quote `{{ name }}` in a `.yaml` and
//! escape `&` in an `.xml`), the template's trailing newline kept, undefined values an error
//! (never an empty string in a config file), and a fuel budget per item.

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value;

use crate::{Files, Problem, position};

/// What a render may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// minijinja's fuel per item: about one unit per instruction; a template that needs more
    /// (a loop that does not end, or one too long for a config file) fails.
    pub fuel: u64,
    /// The largest rendered file, in bytes.
    pub max_file_bytes: usize,
}

impl Default for Limits {
    /// 100,000 units of fuel (a loop over a few thousand values) and 1 MiB per file.
    fn default() -> Limits {
        Limits { fuel: 100_000, max_file_bytes: 1 << 20 }
    }
}

/// Where a render happens, given to templates as `kiln.project`, `kiln.app` and
/// `kiln.environment` (the values may not define `kiln`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Meta<'a> {
    /// The project.
    pub project: &'a str,
    /// The application.
    pub app: &'a str,
    /// The environment.
    pub environment: &'a str,
}

/// The files of one render and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// File name to rendered text.
    pub files: Files,
    /// [`crate::digest`] of `files`.
    pub digest: String,
}

/// The environment every render and check uses, holding `templates`.
fn environment(templates: &Files, limits: &Limits) -> Result<Environment<'static>, Problem> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax.keep_trailing_newline(true);
    env.set_syntax(syntax.build().expect("the default delimiters are valid"));
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(limits.fuel));
    env.set_debug(true);
    for (name, text) in templates {
        env.add_template_owned(name.clone(), text.clone())
            .map_err(|e| problem(&e, name, templates, limits))?;
    }
    Ok(env)
}

/// Checks one template's syntax (values are not needed): a syntax error is a [`Problem`] at
/// its line and column.
pub fn check_template(file: &str, template: &str) -> Result<(), Problem> {
    let one: Files = [(file.to_string(), template.to_string())].into();
    environment(&one, &Limits::default()).map(|_| ())
}

/// Renders every template of `templates` with `values` (a map) and `meta` (as `kiln`): the
/// files, or every problem found (each item is tried, so one render reports them all).
pub fn render(
    templates: &Files,
    values: &Value,
    meta: &Meta<'_>,
    limits: &Limits,
) -> Result<Rendered, Vec<Problem>> {
    let env = environment(templates, limits).map_err(|p| vec![p])?;
    let Value::Object(map) = values else {
        let message = format!("values must be a map, not {}", crate::values::kind(values));
        return Err(vec![Problem { file: "values".into(), line: 1, column: 1, message }]);
    };
    if map.contains_key("kiln") {
        return Err(vec![Problem {
            file: "values".into(),
            line: 1,
            column: 1,
            message: "`kiln` is reserved (templates read `kiln.project`, `kiln.app` and \
                      `kiln.environment`): name the value otherwise"
                .into(),
        }]);
    }
    let mut context = map.clone();
    context.insert("kiln".into(), serde_json::to_value(meta).unwrap_or(Value::Null));
    let context = minijinja::Value::from(minijinja::value::Serde(Value::Object(context)));
    let mut files = Files::new();
    let mut problems = Vec::new();
    for name in templates.keys() {
        let rendered = env.get_template(name).and_then(|t| t.render(context.clone()));
        match rendered {
            Ok(text) if text.len() > limits.max_file_bytes => problems.push(Problem {
                file: name.clone(),
                line: 1,
                column: 1,
                message: format!(
                    "renders to {} bytes, more than the {} a config file may have",
                    text.len(),
                    limits.max_file_bytes
                ),
            }),
            Ok(text) => {
                files.insert(name.clone(), text);
            }
            Err(e) => problems.push(problem(&e, name, templates, limits)),
        }
    }
    if problems.is_empty() {
        let digest = crate::digest(&files);
        Ok(Rendered { files, digest })
    } else {
        Err(problems)
    }
}

/// A minijinja error as a problem of the file it happened in (an included item's, if there),
/// with what was undefined when a value was.
fn problem(e: &minijinja::Error, rendering: &str, templates: &Files, limits: &Limits) -> Problem {
    let file = e.name().unwrap_or(rendering).to_string();
    let source = templates.get(&file).map(String::as_str).or(e.template_source());
    let expr = match (source, e.range()) {
        (Some(src), Some(r)) => src.get(r.clone()).map(|s| (s.trim().to_string(), r.start)),
        _ => None,
    };
    let (line, column) = match (source, &expr) {
        (Some(src), Some((_, start))) => position(src, *start),
        _ => (e.line().unwrap_or(1), 1),
    };
    let detail = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    let message = match e.kind() {
        ErrorKind::UndefinedError => match &expr {
            Some((expr, _)) if !expr.is_empty() => format!(
                "`{expr}` is undefined: no such value in the shared values or the environment's"
            ),
            _ => format!("undefined value ({detail})"),
        },
        ErrorKind::SyntaxError => format!("syntax error: {detail}"),
        ErrorKind::OutOfFuel => format!(
            "the template needs more than {} units of fuel (a loop that does not end, or one too \
             long for a config file)",
            limits.fuel
        ),
        ErrorKind::TemplateNotFound => format!("{detail} (include and import name config items)"),
        _ => match &expr {
            Some((expr, _)) if !expr.is_empty() => format!("{detail} (in `{expr}`)"),
            _ => detail,
        },
    };
    Problem { file, line, column, message }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const META: Meta<'static> = Meta { project: "shop", app: "api", environment: "prod" };

    fn items(pairs: &[(&str, &str)]) -> Files {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn ok(templates: &[(&str, &str)], values: Value) -> Files {
        render(&items(templates), &values, &META, &Limits::default()).unwrap().files
    }

    fn err(templates: &[(&str, &str)], values: Value) -> Vec<Problem> {
        render(&items(templates), &values, &META, &Limits::default()).unwrap_err()
    }

    #[test]
    fn yaml_and_json_are_not_escaped_and_the_trailing_newline_stays() {
        let files = ok(
            &[
                ("app.yaml", "name: {{ name }}\nport: {{ port }}\n"),
                ("app.json", "{\"name\": \"{{ name }}\"}\n"),
                ("site.xml", "<a href=\"{{ url }}\"/>\n"),
            ],
            json!({"name": "shop-api", "port": 8080, "url": "http://x/?a=1&b=2"}),
        );
        assert_eq!(files["app.yaml"], "name: shop-api\nport: 8080\n");
        assert_eq!(files["app.json"], "{\"name\": \"shop-api\"}\n");
        assert_eq!(files["site.xml"], "<a href=\"http://x/?a=1&b=2\"/>\n");
    }

    #[test]
    fn kiln_names_where_the_render_happens() {
        let files =
            ok(&[("env", "{{ kiln.project }}/{{ kiln.app }}@{{ kiln.environment }}")], json!({}));
        assert_eq!(files["env"], "shop/api@prod");
        let p = err(&[("env", "x")], json!({"kiln": 1}));
        assert!(p[0].message.contains("`kiln` is reserved"), "{p:?}");
    }

    #[test]
    fn an_undefined_value_names_the_file_line_column_and_expression() {
        let p = err(
            &[("app.yaml", "port: {{ port }}\nhost: {{ db.host }}\n")],
            json!({"port": 1, "db": {}}),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!((p[0].file.as_str(), p[0].line, p[0].column), ("app.yaml", 2, 10));
        assert!(p[0].message.contains("`db.host` is undefined"), "{p:?}");
        let p = err(&[("a", "{{ missing }}"), ("b", "ok\n{% if nope %}x{% endif %}")], json!({}));
        assert_eq!(p.len(), 2, "every item is tried: {p:?}");
        assert_eq!((p[0].file.as_str(), p[0].line), ("a", 1));
        assert!(p[0].message.contains("`missing` is undefined"), "{p:?}");
        assert_eq!((p[1].file.as_str(), p[1].line), ("b", 2));
    }

    #[test]
    fn defined_tests_and_defaults_still_work_in_strict_mode() {
        let files = ok(
            &[("a", "{{ x | default('none') }} {% if y is defined %}y{% else %}no y{% endif %}")],
            json!({}),
        );
        assert_eq!(files["a"], "none no y");
    }

    #[test]
    fn a_syntax_error_is_found_before_rendering_with_its_position() {
        let p = check_template("app.yaml", "a: 1\nb: {{ x \n").unwrap_err();
        assert_eq!((p.file.as_str(), p.line), ("app.yaml", 2));
        assert!(p.message.starts_with("syntax error"), "{p}");
        assert!(
            check_template("ok.yaml", "a: {{ x }}\n{% for i in xs %}{{ i }}{% endfor %}").is_ok()
        );
    }

    #[test]
    fn fuel_bounds_a_template() {
        let t = items(&[(
            "big",
            "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
        )]);
        let p = render(&t, &json!({}), &META, &Limits { fuel: 10_000, ..Limits::default() })
            .unwrap_err();
        assert!(p[0].message.contains("more than 10000 units of fuel"), "{p:?}");
    }

    #[test]
    fn a_file_larger_than_the_limit_is_refused() {
        let t = items(&[("big", "{% for i in range(2000) %}0123456789{% endfor %}")]);
        let p =
            render(&t, &json!({}), &META, &Limits { max_file_bytes: 1000, ..Limits::default() })
                .unwrap_err();
        assert!(p[0].message.contains("20000 bytes"), "{p:?}");
    }

    #[test]
    fn items_include_each_other() {
        let files = ok(
            &[
                ("common.inc", "region: {{ region }}\n"),
                ("app.yaml", "{% include 'common.inc' %}port: 1\n"),
            ],
            json!({"region": "eu"}),
        );
        assert_eq!(files["app.yaml"], "region: eu\nport: 1\n");
        let p = err(&[("app.yaml", "{% include 'nope.inc' %}")], json!({}));
        assert!(p[0].message.contains("nope.inc"), "{p:?}");
    }

    #[test]
    fn the_digest_is_the_files_digest() {
        let r = render(&items(&[("a", "{{ v }}")]), &json!({"v": 1}), &META, &Limits::default())
            .unwrap();
        assert_eq!(r.digest, crate::digest(&r.files));
    }
}
