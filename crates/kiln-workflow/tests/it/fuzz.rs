//! `compile` never panics, whatever the input; matrix expansion counts are exact.

use std::fmt::Write as _;

use proptest::prelude::*;

use crate::support::{MapLoader, check};

fn compile_text(text: &str) {
    let loader = MapLoader::new(&[("main.yml", text), ("t.yml", text)]);
    let compiled = kiln_workflow::compile("main.yml", &loader);
    // A plan is produced only without errors.
    if compiled.plan.is_some() {
        assert!(compiled.diagnostics.iter().all(|d| d.severity != kiln_workflow::Severity::Error));
    }
    for d in &compiled.diagnostics {
        assert!(d.line >= 1 && d.column >= 1, "{d}");
    }
}

/// Pieces of workflow files, so random inputs reach deep into the compiler.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "name: x\n",
        "stages:\n",
        "  - name: s\n",
        "    jobs:\n",
        "      a:\n",
        "      b:\n",
        "        script: echo ${{ params.p }}\n",
        "        needs: [a]\n",
        "        needs: b\n",
        "        matrix: { o: [1, 2], include: [{o: 3}], exclude: [{o: 1}] }\n",
        "        if: ${{ jobs.a.result == 'x' }}\n",
        "        command: [x]\n",
        "    type: approval\n",
        "params: { p: { type: choice, options: [a], default: b } }\n",
        "uses: t.yml\n",
        "with: { p: a }\n",
        "env: { E: '${{ matrix.o }}' }\n",
        "        retry: { max: 1 }\n",
        "        resources: { cpu: 1m, memory: 1Ki }\n",
        "        services: [{name: d, image: i}]\n",
        "  <<: *x\n",
        "&x ",
        "*x\n",
        "{",
        "}",
        "[",
        "]",
        ": ",
        "- ",
        "'",
        "\"",
        "\t",
        "\n",
        "#",
        "${{",
        "}}",
        "---\n",
        "!!str ",
        "?",
        "|\n",
        ">\n",
        "é",
        "\u{0}",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        compile_text(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn never_panics_on_workflow_soup(parts in prop::collection::vec(piece(), 0..40)) {
        compile_text(&parts.concat());
    }

    #[test]
    fn matrix_expansion_counts(
        sizes in prop::collection::vec(1usize..4, 1..4),
        excluded in prop::collection::vec(0usize..4, 0..3),
    ) {
        // Axes a0, a1, … with values 0..size; exclude entries fix axis 0 to a value.
        let mut matrix = String::new();
        for (i, n) in sizes.iter().enumerate() {
            let values: Vec<String> = (0..*n).map(|v| v.to_string()).collect();
            let _ = writeln!(matrix, "          a{i}: [{}]", values.join(", "));
        }
        let mut removed = std::collections::BTreeSet::new();
        if !excluded.is_empty() {
            matrix.push_str("          exclude:\n");
            for v in &excluded {
                let _ = writeln!(matrix, "            - {{ a0: {v} }}");
                if *v < sizes[0] {
                    removed.insert(*v);
                }
            }
        }
        let text = format!(
            "name: m\nstages:\n  - name: s\n    jobs:\n      j:\n        script: echo\n        matrix:\n{matrix}  - name: t\n    jobs:\n      k: {{ script: echo }}\n"
        );
        let total: usize = sizes.iter().product();
        let per_value: usize = sizes[1..].iter().product();
        let expected = total - removed.len() * per_value;
        let out = check(&text);
        if expected == 0 {
            prop_assert!(out.contains("no combinations left"), "{out}");
        } else {
            let jobs = out.lines().filter(|l| l.starts_with("job j[")).count();
            prop_assert_eq!(jobs, expected, "{}", out);
            // `k` needs every instance.
            let k = out.lines().find(|l| l.starts_with("job k ")).unwrap_or_default();
            prop_assert_eq!(k.matches("j[").count(), expected);
        }
    }
}
