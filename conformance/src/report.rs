//! Output: TAP per runtime, the side-by-side table, TSV rows, and one
//! summary line per runtime.

use std::io::Write;

use crate::suite::{Case, Outcome};

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// TAP version 13 for one runtime.
pub fn tap(
    out: &mut impl Write,
    runtime: &str,
    cases: &[&Case],
    outcomes: &[Outcome],
) -> std::io::Result<()> {
    writeln!(out, "# runtime: {runtime}")?;
    writeln!(out, "TAP version 13")?;
    writeln!(out, "1..{}", cases.len())?;
    for (i, (case, outcome)) in cases.iter().zip(outcomes).enumerate() {
        let n = i + 1;
        let label = format!("{} [{} {}]", case.name, case.level.as_str(), case.section);
        match outcome {
            Outcome::Pass => writeln!(out, "ok {n} - {label}")?,
            Outcome::Skip(why) => writeln!(out, "ok {n} - {label} # SKIP {}", one_line(why))?,
            Outcome::Fail(why) => {
                writeln!(out, "not ok {n} - {label}")?;
                writeln!(out, "  ---")?;
                writeln!(out, "  message: {:?}", one_line(why))?;
                writeln!(out, "  ...")?;
            }
        }
    }
    Ok(())
}

/// The side-by-side table: one row per case, one column per runtime.
pub fn table(
    out: &mut impl Write,
    names: &[String],
    cases: &[&Case],
    outcomes: &[Vec<Outcome>],
) -> std::io::Result<()> {
    let width = cases.iter().map(|c| c.name.len()).max().unwrap_or(4).max(4);
    write!(out, "{:<width$}", "case")?;
    for n in names {
        write!(out, "  {:<8}", n)?;
    }
    writeln!(out)?;
    for (i, case) in cases.iter().enumerate() {
        write!(out, "{:<width$}", case.name)?;
        for o in outcomes {
            let cell = match &o[i] {
                Outcome::Pass => "pass",
                Outcome::Fail(_) => "FAIL",
                Outcome::Skip(_) => "skip",
            };
            write!(out, "  {cell:<8}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// `case<TAB>runtime<TAB>pass|fail|skip<TAB>detail` rows.
pub fn tsv(
    out: &mut impl Write,
    names: &[String],
    cases: &[&Case],
    outcomes: &[Vec<Outcome>],
) -> std::io::Result<()> {
    for (r, name) in names.iter().enumerate() {
        for (i, case) in cases.iter().enumerate() {
            let o = &outcomes[r][i];
            writeln!(
                out,
                "{}\t{}\t{}\t{}",
                case.name,
                name,
                o.word(),
                one_line(o.detail()).replace('\t', " ")
            )?;
        }
    }
    Ok(())
}

/// `NAME: N passed, M failed, K skipped`.
pub fn summary(name: &str, outcomes: &[Outcome]) -> String {
    let count = |w: &str| outcomes.iter().filter(|o| o.word() == w).count();
    format!(
        "{name}: {} passed, {} failed, {} skipped",
        count("pass"),
        count("fail"),
        count("skip")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{case, Level};

    #[test]
    fn formats() {
        let c = case("a.b", "config.md#x", Level::Must, |_| Ok(()));
        let cases = [&c];
        let outcomes = vec![vec![Outcome::Fail("bad\nthing".into())]];
        let mut buf = Vec::new();
        tap(&mut buf, "rt", &cases, &outcomes[0]).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text
            .contains("1..1\nnot ok 1 - a.b [MUST config.md#x]\n  ---\n  message: \"bad thing\""));
        let mut buf = Vec::new();
        tsv(&mut buf, &["rt".into()], &cases, &outcomes).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "a.b\trt\tfail\tbad thing\n"
        );
        assert_eq!(
            summary("rt", &outcomes[0]),
            "rt: 0 passed, 1 failed, 0 skipped"
        );
    }
}
