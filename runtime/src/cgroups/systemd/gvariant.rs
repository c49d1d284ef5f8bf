//! The GVariant text format, as far as `org.systemd.property.*`
//! annotations use it (runc's docs/systemd.md): booleans, numbers (an
//! untyped integer is an int32, as in GLib), type keywords (`uint64 5`),
//! `@t 5` annotations, quoted strings, arrays and tuples.

use crate::dbus::Value;

/// Parses one value; the error says what is wrong and where.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser { s: text, pos: 0 };
    let v = p.value(None)?;
    p.ws();
    if p.pos != text.len() {
        return Err(format!(
            "unexpected {:?} at offset {}",
            &text[p.pos..],
            p.pos
        ));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

/// GVariant's type keywords and the types they stand for.
const KEYWORDS: [(&str, &str); 12] = [
    ("boolean", "b"),
    ("byte", "y"),
    ("int16", "n"),
    ("uint16", "q"),
    ("int32", "i"),
    ("uint32", "u"),
    ("handle", "h"),
    ("int64", "x"),
    ("uint64", "t"),
    ("double", "d"),
    ("objectpath", "o"),
    ("signature", "g"),
];

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.s.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// A run of characters that `keep` accepts.
    fn token(&mut self, keep: impl Fn(char) -> bool) -> &str {
        let start = self.pos;
        let len = self.rest().find(|c| !keep(c)).unwrap_or(self.rest().len());
        self.pos += len;
        &self.s[start..start + len]
    }

    fn value(&mut self, want: Option<&str>) -> Result<Value, String> {
        self.ws();
        let at = self.pos;
        let Some(first) = self.rest().chars().next() else {
            return Err("a value is missing".into());
        };
        match first {
            '@' => {
                self.pos += 1;
                let sig = self
                    .token(|c| !c.is_whitespace() && c != '[' && c != '(')
                    .to_string();
                crate::dbus::wire::split_signature(&sig)
                    .ok()
                    .filter(|t| t.len() == 1)
                    .ok_or_else(|| format!("@{sig}: not a single type"))?;
                self.value(Some(&sig))
            }
            '[' => self.array(want),
            '(' => self.tuple(want),
            '\'' | '"' => {
                let s = self.string(first)?;
                Ok(match want {
                    None | Some("s") => Value::Str(s),
                    Some("o") => Value::ObjectPath(s),
                    Some("g") => Value::Signature(s),
                    Some(t) => return Err(format!("a string where {t} was expected, at {at}")),
                })
            }
            c if c.is_ascii_alphabetic() => {
                let word = self.token(|c| c.is_ascii_alphanumeric()).to_string();
                if let Some((_, sig)) = KEYWORDS.iter().find(|(k, _)| *k == word) {
                    if want.is_some_and(|w| w != *sig) {
                        return Err(format!("{word} where {} was expected", want.unwrap_or("")));
                    }
                    return self.value(Some(sig));
                }
                let b = match word.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("unknown word {word:?} at offset {at}")),
                };
                match want {
                    None | Some("b") => Ok(Value::Bool(b)),
                    Some(t) => Err(format!("a boolean where {t} was expected")),
                }
            }
            _ => self.number(want),
        }
    }

    fn string(&mut self, quote: char) -> Result<String, String> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let Some((_, e)) = chars.next() else { break };
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        Err(format!("unterminated string at offset {start}"))
    }

    fn number(&mut self, want: Option<&str>) -> Result<Value, String> {
        let at = self.pos;
        let text = self
            .token(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.'))
            .to_string();
        let bad = || {
            format!(
                "{text:?} at offset {at} is not a number of type {}",
                want.unwrap_or("i")
            )
        };
        let float =
            !text.starts_with("0x") && !text.starts_with("-0x") && text.contains(['.', 'e', 'E']);
        let want = want.unwrap_or(if float { "d" } else { "i" });
        if want == "d" {
            return text.parse::<f64>().map(Value::Double).map_err(|_| bad());
        }
        let (neg, digits) = match text.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, text.strip_prefix('+').unwrap_or(&text)),
        };
        let magnitude = match digits.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => digits.parse::<u64>(),
        }
        .map_err(|_| bad())?;
        let n = if neg {
            i128::from(magnitude).wrapping_neg()
        } else {
            i128::from(magnitude)
        };
        let fit = |ok: Option<Value>| ok.ok_or_else(bad);
        match want {
            "y" => fit(u8::try_from(n).ok().map(Value::Byte)),
            "n" => fit(i16::try_from(n).ok().map(Value::I16)),
            "q" => fit(u16::try_from(n).ok().map(Value::U16)),
            "i" => fit(i32::try_from(n).ok().map(Value::I32)),
            "u" | "h" => fit(u32::try_from(n).ok().map(Value::U32)),
            "x" => fit(i64::try_from(n).ok().map(Value::I64)),
            "t" => fit(u64::try_from(n).ok().map(Value::U64)),
            _ => Err(bad()),
        }
    }

    fn array(&mut self, want: Option<&str>) -> Result<Value, String> {
        let mut elem = match want {
            Some(w) => Some(
                w.strip_prefix('a')
                    .ok_or_else(|| format!("an array where {w} was expected"))?
                    .to_string(),
            ),
            None => None,
        };
        self.pos += 1;
        let mut items = Vec::new();
        if !self.eat(']') {
            loop {
                let v = self.value(elem.as_deref())?;
                elem.get_or_insert_with(|| v.signature());
                items.push(v);
                if self.eat(']') {
                    break;
                }
                if !self.eat(',') {
                    return Err(format!("expected ',' or ']' at offset {}", self.pos));
                }
            }
        }
        let elem = elem.ok_or("an empty array needs a type (@as [])")?;
        Ok(Value::Array(elem, items))
    }

    fn tuple(&mut self, want: Option<&str>) -> Result<Value, String> {
        let types: Option<Vec<String>> = match want {
            Some(w) if w.starts_with('(') => Some(
                crate::dbus::wire::split_signature(&w[1..w.len() - 1])
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
            ),
            Some(w) => return Err(format!("a tuple where {w} was expected")),
            None => None,
        };
        self.pos += 1;
        let mut fields = Vec::new();
        while !self.eat(')') {
            if !fields.is_empty() && !self.eat(',') {
                return Err(format!("expected ',' or ')' at offset {}", self.pos));
            }
            let t = types
                .as_ref()
                .and_then(|t| t.get(fields.len()))
                .map(String::as_str);
            fields.push(self.value(t)?);
        }
        if fields.is_empty() || types.is_some_and(|t| t.len() != fields.len()) {
            return Err("a tuple with the wrong number of fields".into());
        }
        Ok(Value::Struct(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runcs_examples() {
        assert_eq!(parse("uint64 123456789").unwrap(), Value::U64(123_456_789));
        assert_eq!(
            parse("'inactive-or-failed'").unwrap(),
            Value::Str("inactive-or-failed".into())
        );
    }

    #[test]
    fn numbers_default_to_int32_or_double() {
        assert_eq!(parse("42").unwrap(), Value::I32(42));
        assert_eq!(parse("-7").unwrap(), Value::I32(-7));
        assert_eq!(parse("1.5").unwrap(), Value::Double(1.5));
        assert_eq!(parse("@t 0x10").unwrap(), Value::U64(16));
        assert_eq!(parse("byte 255").unwrap(), Value::Byte(255));
        assert!(parse("byte 256").is_err());
        assert!(parse("uint32 -1").is_err());
        assert!(parse("3000000000").is_err());
    }

    #[test]
    fn booleans_strings_arrays_tuples() {
        assert_eq!(parse(" true ").unwrap(), Value::Bool(true));
        assert_eq!(parse(r#""a\"b""#).unwrap(), Value::Str("a\"b".into()));
        assert_eq!(
            parse("['a.service', \"b.service\"]").unwrap(),
            Value::strings(["a.service", "b.service"])
        );
        assert_eq!(parse("@as []").unwrap(), Value::Array("s".into(), vec![]));
        assert_eq!(
            parse("@at [1, 2]").unwrap(),
            Value::Array("t".into(), vec![Value::U64(1), Value::U64(2)])
        );
        assert_eq!(parse("[('/dev/null', 'rw')]").unwrap().signature(), "a(ss)");
        assert_eq!(
            parse("objectpath '/a'").unwrap(),
            Value::ObjectPath("/a".into())
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "", "[]", "[1, 'a']", "'open", "maybe", "1 2", "[1 2]", "@x 'a'", "()",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
