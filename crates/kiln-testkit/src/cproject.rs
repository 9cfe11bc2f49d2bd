//! A generated C project for build tests and benchmarks ([`c_project`]): `files` source
//! files of a few loop-heavy functions each, a `main.c` that sums what they return, and a
//! `Makefile` whose compiler is `$(CC)` (so `make CC="distcc gcc"` distributes it) and
//! whose link step is `$(LINK)` (plain `cc`, always local).

use std::fmt::Write as _;
use std::path::Path;

/// Functions per source file (each one a little work for the optimiser).
const FUNCTIONS: u32 = 6;

/// What `part_<n>` returns, as the C code computes it (unsigned 32-bit arithmetic).
fn part(n: u32) -> u32 {
    let mut total = 0u32;
    for f in 0..FUNCTIONS {
        let k = n.wrapping_mul(7).wrapping_add(f).wrapping_add(3);
        let t: Vec<u32> =
            (0..64u32).map(|i| i.wrapping_mul(k).wrapping_add(f.wrapping_mul(11))).collect();
        let mut s = 0u32;
        for i in 0..64u32 {
            let j = (i.wrapping_mul(5).wrapping_add(f) % 64) as usize;
            s = s.wrapping_add(t[i as usize] ^ (t[j] >> 1));
        }
        total = total.wrapping_add(s);
    }
    total
}

/// Writes a C project of `files` sources (`src/part_<n>.c`, plus `src/main.c`), a header and
/// a `Makefile` into `dir`; returns what the built program (`./prog`) prints:
/// `sum=<n> parts=<files>`. `make` builds it with `$(CC)` (`-O2`), then links with `$(LINK)`.
pub fn c_project(dir: &Path, files: u32) -> std::io::Result<String> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src)?;
    let mut header = String::from("#ifndef PARTS_H\n#define PARTS_H\n");
    for n in 0..files {
        let _ = writeln!(header, "unsigned part_{n}(void);");
    }
    header.push_str("#endif\n");
    std::fs::write(src.join("parts.h"), header)?;
    for n in 0..files {
        let mut c = String::from("#include \"parts.h\"\n\n");
        for f in 0..FUNCTIONS {
            let _ = write!(
                c,
                "static unsigned f{f}(void)\n{{\n    unsigned t[64];\n    unsigned s = 0;\n    \
                 for (unsigned i = 0; i < 64; i++)\n        t[i] = i * ({n}u * 7u + {f}u + 3u) + \
                 {f}u * 11u;\n    for (unsigned i = 0; i < 64; i++)\n        s += t[i] ^ \
                 (t[(i * 5u + {f}u) % 64u] >> 1);\n    return s;\n}}\n\n"
            );
        }
        let calls: Vec<String> = (0..FUNCTIONS).map(|f| format!("f{f}()")).collect();
        let _ = writeln!(c, "unsigned part_{n}(void)\n{{\n    return {};\n}}", calls.join(" + "));
        std::fs::write(src.join(format!("part_{n}.c")), c)?;
    }
    let mut main = String::from(
        "#include <stdio.h>\n#include \"parts.h\"\n\nint main(void)\n{\n    unsigned sum = 0;\n",
    );
    for n in 0..files {
        let _ = writeln!(main, "    sum += part_{n}();");
    }
    let _ = writeln!(main, "    printf(\"sum=%u parts={files}\\n\", sum);\n    return 0;\n}}");
    std::fs::write(src.join("main.c"), main)?;
    std::fs::write(
        dir.join("Makefile"),
        "CC ?= cc\nLINK ?= cc\nCFLAGS ?= -O2\nSRCS := $(wildcard src/*.c)\nOBJS := \
         $(SRCS:.c=.o)\n\nprog: $(OBJS)\n\t$(LINK) -o $@ $(OBJS)\n\nsrc/%.o: src/%.c \
         src/parts.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\nclean:\n\trm -f prog $(OBJS)\n\n.PHONY: \
         clean\n",
    )?;
    let sum = (0..files).fold(0u32, |acc, n| acc.wrapping_add(part(n)));
    Ok(format!("sum={sum} parts={files}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_program_prints_what_c_project_says() {
        let test = "the_program_prints_what_c_project_says";
        if crate::peer(test, "/usr/bin/make").is_none()
            || crate::peer(test, "/usr/bin/cc").is_none()
        {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let want = super::c_project(dir.path(), 5).unwrap();
        let make =
            std::process::Command::new("make").arg("-j4").current_dir(dir.path()).output().unwrap();
        assert!(make.status.success(), "{}", String::from_utf8_lossy(&make.stderr));
        let run = std::process::Command::new(dir.path().join("prog")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), want);
    }
}
