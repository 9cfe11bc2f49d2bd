//! Prometheus' text exposition format (0.0.4) and OpenMetrics 1.0, read line by line into
//! families shaped as the text format names them. A line that is neither a comment nor a
//! sample fails the whole page with its line number, as Prometheus fails such a scrape.
//! Timestamps and exemplars are read past and dropped: a scraped sample is of its scrape's
//! time.

use crate::{Family, Labels, MetricType, Sample, is_label_name, is_metric_name};

/// Which rules a page follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `text/plain; version=0.0.4` (and anything unnamed): `# TYPE x` names the samples `x`.
    Text,
    /// `application/openmetrics-text`: `# TYPE x counter` covers `x_total` and `x_created`,
    /// `# EOF` ends the page.
    OpenMetrics,
}

impl Dialect {
    /// The dialect of an answer by its `Content-Type` (none: the text format).
    pub fn from_content_type(content_type: Option<&str>) -> Dialect {
        let ct = content_type.unwrap_or("").trim_start().to_ascii_lowercase();
        if ct.starts_with("application/openmetrics-text") {
            Dialect::OpenMetrics
        } else {
            Dialect::Text
        }
    }
}

/// Why a page could not be read: the line and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number (0: the page as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A `# TYPE` as written, before it is shaped into the text format's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Untyped,
}

impl Written {
    fn parse(word: &str) -> Option<Written> {
        Some(match word {
            "counter" => Written::Counter,
            "gauge" => Written::Gauge,
            "histogram" => Written::Histogram,
            "gaugehistogram" => Written::GaugeHistogram,
            "summary" => Written::Summary,
            "info" => Written::Info,
            "stateset" => Written::StateSet,
            "untyped" | "unknown" => Written::Untyped,
            _ => return None,
        })
    }

    /// The suffixes a family of this type gives its samples' names.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            Written::Counter => &["_total", "_created"],
            Written::Histogram => &["_bucket", "_sum", "_count", "_created"],
            Written::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            Written::Summary => &["_sum", "_count", "_created"],
            Written::Info => &["_info"],
            Written::Gauge | Written::StateSet | Written::Untyped => &[],
        }
    }
}

/// A family as read, before shaping.
#[derive(Debug)]
struct Raw {
    name: String,
    help: Option<String>,
    kind: Option<Written>,
    samples: Vec<Sample>,
}

impl Raw {
    fn new(name: &str) -> Raw {
        Raw { name: name.to_string(), help: None, kind: None, samples: Vec::new() }
    }

    fn takes(&self, sample: &str) -> bool {
        match sample.strip_prefix(self.name.as_str()) {
            Some("") => true,
            Some(suffix) => self.kind.is_some_and(|k| k.suffixes().contains(&suffix)),
            None => false,
        }
    }
}

/// Reads a page. At most `max_samples` samples: a page with more is refused (Prometheus'
/// `sample_limit`), so that one target cannot fill the server's memory.
pub fn parse(text: &str, dialect: Dialect, max_samples: usize) -> Result<Vec<Family>, ParseError> {
    let mut raws: Vec<Raw> = Vec::new();
    let mut count = 0usize;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let err = |message: String| ParseError { line: n, message };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            if dialect == Dialect::OpenMetrics && line.trim_end() == "# EOF" {
                break;
            }
            meta(rest, &mut raws).map_err(err)?;
            continue;
        }
        let sample = sample(line, dialect).map_err(err)?;
        count += 1;
        if count > max_samples {
            return Err(err(format!("more than {max_samples} samples: the page is refused")));
        }
        match raws.last_mut() {
            Some(last) if last.takes(&sample.name) => last.samples.push(sample),
            _ => {
                let mut raw = Raw::new(&sample.name);
                raw.samples.push(sample);
                raws.push(raw);
            }
        }
    }
    Ok(raws.into_iter().flat_map(shape).collect())
}

/// A `#` line: `HELP` and `TYPE` are kept, anything else is a comment.
fn meta(rest: &str, raws: &mut Vec<Raw>) -> Result<(), String> {
    if !rest.starts_with([' ', '\t']) {
        return Ok(()); // `#comment`
    }
    let (keyword, rest) = split_word(rest.trim_start());
    if !matches!(keyword, "HELP" | "TYPE") {
        return Ok(());
    }
    let (name, rest) = split_word(rest.trim_start());
    if !is_metric_name(name) {
        return Err(format!("# {keyword}: expected a metric name, found '{name}'"));
    }
    let index = match raws.last() {
        Some(last) if last.name == name => raws.len() - 1,
        _ => {
            raws.push(Raw::new(name));
            raws.len() - 1
        }
    };
    let raw = &mut raws[index];
    if keyword == "HELP" {
        raw.help = Some(unescape(rest.trim_start(), false));
        return Ok(());
    }
    let word = rest.trim();
    let kind = Written::parse(word).ok_or_else(|| {
        format!(
            "# TYPE {name}: unknown type '{word}', expected counter, gauge, histogram, summary, \
             untyped (or OpenMetrics' gaugehistogram, info, stateset, unknown)"
        )
    })?;
    if raw.kind.is_some() {
        return Err(format!("a second # TYPE line for {name}"));
    }
    raw.kind = Some(kind);
    Ok(())
}

/// Splits at the first space or tab.
fn split_word(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// `\\` and `\n` (and, in label values, `\"`); any other backslash is kept as written.
fn unescape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `name{labels} value [timestamp] [# exemplar]`.
fn sample(line: &str, dialect: Dialect) -> Result<Sample, String> {
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..end];
    if !is_metric_name(name) {
        let shown: String = line.chars().take(40).collect();
        return Err(format!("expected a sample (name{{labels}} value), found '{shown}'"));
    }
    let mut rest = &line[end..];
    let mut labels = Labels::new();
    if let Some(inside) = rest.trim_start_matches([' ', '\t']).strip_prefix('{') {
        rest = read_labels(inside, name, &mut labels)?;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(format!("{name}: expected a space and a value after the name and labels"));
    }
    let (value, rest) = split_word(rest.trim_start());
    let value = number(value).ok_or_else(|| {
        format!("{name}: expected a number (or NaN, +Inf, -Inf) as the value, found '{value}'")
    })?;
    let rest = rest.trim();
    if !rest.is_empty() && !rest.starts_with('#') {
        let (timestamp, after) = split_word(rest);
        if number(timestamp).is_none() {
            return Err(format!(
                "{name}: expected a timestamp after the value, found '{timestamp}'"
            ));
        }
        let after = after.trim();
        let exemplar = dialect == Dialect::OpenMetrics && after.starts_with('#');
        if !after.is_empty() && !exemplar {
            return Err(format!("{name}: unexpected '{after}' after the timestamp"));
        }
    }
    Ok(Sample { name: name.to_string(), labels, value })
}

/// Reads `k="v",…}` into `labels`; returns what follows the `}`.
fn read_labels<'a>(mut s: &'a str, metric: &str, labels: &mut Labels) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
        let name = &s[..end];
        if !is_label_name(name) {
            return Err(format!("{metric}: expected a label name or }}, found '{}'", head(s)));
        }
        s = s[end..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("{metric}: expected = after label {name}"))?
            .trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("{metric}: expected a quoted value for label {name}"))?;
        let close = closing_quote(s)
            .ok_or_else(|| format!("{metric}: the value of label {name} has no closing quote"))?;
        if labels.insert(name.to_string(), unescape(&s[..close], true)).is_some() {
            return Err(format!("{metric}: label {name} is given twice"));
        }
        s = s[close + 1..].trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err(format!(
                "{metric}: expected , or }} after label {name}, found '{}'",
                head(s)
            ));
        }
    }
}

/// The index of the first `"` not escaped by a backslash.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

fn head(s: &str) -> String {
    s.chars().take(20).collect()
}

/// A value: a decimal or exponent number, `NaN`, `+Inf`, `-Inf` (any case).
pub(crate) fn number(s: &str) -> Option<f64> {
    let plain =
        s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    let special = matches!(
        s.to_ascii_lowercase().as_str(),
        "nan" | "inf" | "+inf" | "-inf" | "infinity" | "+infinity" | "-infinity"
    );
    if s.is_empty() || !(plain || special) {
        return None;
    }
    s.parse::<f64>().ok()
}

/// A family as read, shaped into the text format's families: an OpenMetrics counter `x`
/// becomes `x_total`, `_created` samples a family of their own, `info` and `stateset` gauges,
/// `gaugehistogram` untyped; families with no sample are dropped.
fn shape(raw: Raw) -> Vec<Family> {
    let Raw { name, help, kind, samples } = raw;
    let created = format!("{name}_created");
    let (created_samples, samples): (Vec<Sample>, Vec<Sample>) =
        samples.into_iter().partition(|s| {
            s.name == created && kind.is_some_and(|k| k.suffixes().contains(&"_created"))
        });
    let (family, kind) = match kind {
        None => (name.clone(), None),
        Some(Written::Counter) => {
            let total = format!("{name}_total");
            let named = if samples.iter().any(|s| s.name == total) { total } else { name.clone() };
            (named, Some(MetricType::Counter))
        }
        Some(Written::Gauge | Written::StateSet) => (name.clone(), Some(MetricType::Gauge)),
        Some(Written::Info) => (format!("{name}_info"), Some(MetricType::Gauge)),
        Some(Written::Histogram) => (name.clone(), Some(MetricType::Histogram)),
        Some(Written::Summary) => (name.clone(), Some(MetricType::Summary)),
        Some(Written::GaugeHistogram) => (name.clone(), None),
        Some(Written::Untyped) => (name.clone(), Some(MetricType::Untyped)),
    };
    let mut out = Vec::new();
    if !samples.is_empty() {
        out.push(Family { name: family, help: help.clone(), kind, samples });
    }
    if !created_samples.is_empty() {
        out.push(Family { name: created, help, kind: None, samples: created_samples });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Vec<Family> {
        parse(text, Dialect::Text, 1000).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn label_values_keep_commas_braces_quotes_and_newlines() {
        let f =
            one("x{pipeline=\"shop,api\",q=\"a}b\",e=\"say \\\"hi\\\"\\n\",p=\"C:\\\\dir\"} 1\n");
        let l = &f[0].samples[0].labels;
        assert_eq!(l["pipeline"], "shop,api");
        assert_eq!(l["q"], "a}b");
        assert_eq!(l["e"], "say \"hi\"\n");
        assert_eq!(l["p"], "C:\\dir");
    }

    #[test]
    fn names_with_colons_and_special_values() {
        let f = one("node:cpu:ratio 0.5\na NaN\nb +Inf\nc -Inf 1700000000000\nd 1e3\n");
        let values: Vec<(String, f64)> =
            f.iter().map(|f| (f.name.clone(), f.samples[0].value)).collect();
        assert_eq!(values[0], ("node:cpu:ratio".into(), 0.5));
        assert!(values[1].1.is_nan());
        assert_eq!(values[2].1, f64::INFINITY);
        assert_eq!(values[3].1, f64::NEG_INFINITY);
        assert_eq!(values[4].1, 1000.0);
    }

    #[test]
    fn a_text_histogram_is_one_family() {
        let f = one(
            "# HELP h Latency.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4.5\nh_count 3\n# TYPE g gauge\ng 1\n",
        );
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].name.as_str(), f[0].kind), ("h", Some(MetricType::Histogram)));
        assert_eq!(f[0].help.as_deref(), Some("Latency."));
        assert_eq!(f[0].samples.len(), 4);
        assert_eq!((f[1].name.as_str(), f[1].kind), ("g", Some(MetricType::Gauge)));
    }

    #[test]
    fn an_openmetrics_counter_is_named_by_its_total() {
        let text = "# HELP kiln_runs_finished Runs ended.\n# TYPE kiln_runs_finished counter\nkiln_runs_finished_total{state=\"success\"} 3\nkiln_runs_finished_created{state=\"success\"} 1.7e9\n# TYPE kiln_info info\nkiln_info{version=\"1\"} 1\n# EOF\nignored after EOF\n";
        let f = parse(text, Dialect::OpenMetrics, 1000).unwrap_or_else(|e| panic!("{e}"));
        let shapes: Vec<(&str, Option<MetricType>, usize)> =
            f.iter().map(|f| (f.name.as_str(), f.kind, f.samples.len())).collect();
        assert_eq!(
            shapes,
            [
                ("kiln_runs_finished_total", Some(MetricType::Counter), 1),
                ("kiln_runs_finished_created", None, 1),
                ("kiln_info_info", Some(MetricType::Gauge), 1),
            ]
        );
    }

    #[test]
    fn exemplars_and_timestamps_are_read_past() {
        let text = "# TYPE c counter\nc_total 1 1700000000.5 # {trace_id=\"a\"} 1.0\n";
        let f = parse(text, Dialect::OpenMetrics, 10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f[0].samples[0].value, 1.0);
    }

    #[test]
    fn a_bad_line_fails_the_page_with_its_number() {
        let cases = [
            ("a 1\nb{x=\"1\" 2\n", "line 2: b: expected , or } after label x, found '2'"),
            (
                "a one\n",
                "line 1: a: expected a number (or NaN, +Inf, -Inf) as the value, found 'one'",
            ),
            ("a{x=1} 2\n", "line 1: a: expected a quoted value for label x"),
            ("a{x=\"1} 2\n", "line 1: a: the value of label x has no closing quote"),
            ("a{x=\"1\",x=\"2\"} 2\n", "line 1: a: label x is given twice"),
            (
                "# TYPE a countr\n",
                "line 1: # TYPE a: unknown type 'countr', expected counter, gauge, histogram, summary, untyped (or OpenMetrics' gaugehistogram, info, stateset, unknown)",
            ),
            ("# TYPE a gauge\n# TYPE a gauge\n", "line 2: a second # TYPE line for a"),
            ("-a 1\n", "line 1: expected a sample (name{labels} value), found '-a 1'"),
            ("a\n", "line 1: a: expected a space and a value after the name and labels"),
            ("a 1 x\n", "line 1: a: expected a timestamp after the value, found 'x'"),
        ];
        for (text, want) in cases {
            let got = parse(text, Dialect::Text, 10).map(|_| ()).unwrap_err().to_string();
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_fine() {
        let f = one("# just a comment\n#no space\n\r\n  \na 1\r\n");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].samples[0].value, 1.0);
    }

    #[test]
    fn too_many_samples_refuse_the_page() {
        let text = "a 1\nb 2\nc 3\n";
        assert!(parse(text, Dialect::Text, 3).is_ok());
        let e = parse(text, Dialect::Text, 2).unwrap_err();
        assert_eq!(e.to_string(), "line 3: more than 2 samples: the page is refused");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Dialect::from_content_type(Some("application/openmetrics-text; version=1.0.0")),
            Dialect::OpenMetrics
        );
        assert_eq!(Dialect::from_content_type(Some("text/plain; version=0.0.4")), Dialect::Text);
        assert_eq!(Dialect::from_content_type(None), Dialect::Text);
    }
}
