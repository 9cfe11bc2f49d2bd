//! Pages of `name value` lines, such as distccd's `--stats` page (`dcc_tcp_accept 3`): every
//! line of exactly two words, a metric name and a number, is a sample of no type; every other
//! line (`argv /distccd`, `dcc_longest_job none`, `dcc_free_space 16811 MB`, markup) is
//! skipped.

use crate::text::number;
use crate::{Family, Labels, ParseError, Sample, is_metric_name};

/// Reads a `name value` page; at most `max_samples` samples (more refuse the page).
pub fn parse_plain(text: &str, max_samples: usize) -> Result<Vec<Family>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(value), None) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let Some(value) = number(value).filter(|_| is_metric_name(name)) else { continue };
        if out.len() == max_samples {
            return Err(ParseError {
                line: i + 1,
                message: format!("more than {max_samples} samples: the page is refused"),
            });
        }
        out.push(Family {
            name: name.to_string(),
            help: None,
            kind: None,
            samples: vec![Sample { name: name.to_string(), labels: Labels::new(), value }],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// distccd 3.4's page, as `curl http://127.0.0.1:<stats-port>/` prints it.
    const DISTCCD: &str = "argv /distccd\n<distccstats>\ndcc_tcp_accept 7\ndcc_rej_bad_req 0\n\
        dcc_compile_ok 2\ndcc_longest_job none\ndcc_longest_job_compiler none\n\
        dcc_longest_job_time_msecs -1\ndcc_load1 1.10\ndcc_max_RSS_name (process_api)\n\
        dcc_free_space 16811 MB\n</distccstats>\n";

    #[test]
    fn numeric_lines_are_samples_and_the_rest_is_skipped() {
        let f = parse_plain(DISTCCD, 100).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(&str, f64)> =
            f.iter().map(|f| (f.name.as_str(), f.samples[0].value)).collect();
        assert_eq!(
            got,
            [
                ("dcc_tcp_accept", 7.0),
                ("dcc_rej_bad_req", 0.0),
                ("dcc_compile_ok", 2.0),
                ("dcc_longest_job_time_msecs", -1.0),
                ("dcc_load1", 1.1),
            ]
        );
    }

    #[test]
    fn too_many_samples_refuse_the_page() {
        assert!(parse_plain("a 1\nb 2\n", 1).is_err());
        assert_eq!(parse_plain("a 1\nb 2\n", 2).map(|f| f.len()), Ok(2));
    }
}
