//! `skiff list`: runc's table (tabwriter, min width 12, padding 3), its
//! JSON array, or ids only.

use std::io::Write;

use crate::cli::{ListArgs, ListFormat};
use crate::container::Container;
use crate::error::Error;
use crate::state::{self, Root};

struct Row {
    id: String,
    pid: libc::pid_t,
    status: String,
    bundle: String,
    created: String,
    owner: String,
    json: String,
}

/// Lays out rows like Go's tabwriter with minwidth 12 and padding 3.
fn table(rows: &[[String; 6]]) -> String {
    let mut widths = [0usize; 6];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count() + 3).max(12);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

pub fn run(root: &Root, args: &ListArgs) -> Result<i32, Error> {
    let mut rows = Vec::new();
    for id in root.ids()? {
        let Ok(c) = Container::load(root, &id) else {
            continue;
        };
        let status = c.status();
        let owner = state::owner_name(&c.dir);
        rows.push(Row {
            id: id.clone(),
            pid: if status == state::Status::Stopped {
                0
            } else {
                c.stored.pid
            },
            status: status.to_string(),
            bundle: c.stored.bundle.display().to_string(),
            created: c.stored.created.clone(),
            json: c.state_json(status, &owner, false),
            owner,
        });
    }
    let mut out = std::io::stdout().lock();
    let text = if args.quiet {
        rows.iter()
            .map(|r| format!("{}\n", r.id))
            .collect::<String>()
    } else {
        match args.format {
            ListFormat::Json => {
                let items: Vec<&str> = rows.iter().map(|r| r.json.as_str()).collect();
                format!("[{}]\n", items.join(","))
            }
            ListFormat::Table => {
                let mut cells =
                    vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
                for r in &rows {
                    cells.push([
                        r.id.clone(),
                        r.pid.to_string(),
                        r.status.clone(),
                        r.bundle.clone(),
                        r.created.clone(),
                        r.owner.clone(),
                    ]);
                }
                table(&cells)
            }
        }
    };
    let _ = out.write_all(text.as_bytes());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_runc_layout() {
        let rows = vec![
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from),
            [
                "t2",
                "4064",
                "created",
                "/tmp/b1",
                "2026-11-28T00:24:49.112342688Z",
                "root",
            ]
            .map(String::from),
        ];
        let expected = "ID          PID         STATUS      BUNDLE      CREATED                          OWNER\n\
                        t2          4064        created     /tmp/b1     2026-11-28T00:24:49.112342688Z   root\n";
        assert_eq!(table(&rows), expected);
    }
}
