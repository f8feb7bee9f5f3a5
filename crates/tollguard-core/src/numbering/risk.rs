//! The risk list: prefixes of destinations with a risk tier, as a data file.
//!
//! Lists age: published high-risk ranges shift every month. So the list is data, not code: the
//! built-in copy (`crates/tollguard-core/data/risk.csv`, documented in `docs/numbering.md`) is
//! compiled in, and `[numbering] risk_file` in the configuration replaces it without a release.
//!
//! Format: CSV with the header `prefix,tier,category,note`; lines starting with `#` are comments.
//! `prefix` is E.164 digits without `+`; `tier` is `low`, `medium`, `high` or `critical`; the
//! longest matching prefix sets the tier (so a sub-range can be lowered as well as raised), and
//! the number type can only raise it (premium, satellite and international networks are at least
//! `high`; see [`super::NumberType::inherent_risk`]). An entry of category `carve_out` is the
//! exception: it sets its range's tier exactly, even below the type's own risk (NL 0900
//! helplines are premium-rate numbers, but honest).

use super::RiskTier;
use std::fmt;

/// One row of the risk list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskEntry {
    /// E.164 digits without `+`.
    pub prefix: String,
    /// The tier numbers under this prefix get.
    pub tier: RiskTier,
    /// A short machine-friendly category, e.g. `irsf_hotspot`, `nanp_lookalike`.
    pub category: String,
    /// Free text for people: why it is listed.
    pub note: String,
}

/// A loaded risk list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RiskList {
    /// Where it came from (a path, or `built-in`).
    pub source: String,
    /// The entries, in file order.
    pub entries: Vec<RiskEntry>,
}

/// A risk-list row that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct RiskListError {
    /// The list's name.
    pub file: String,
    /// One-based line.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

const BUILTIN: &str = include_str!("../../data/risk.csv");

impl RiskList {
    /// The list shipped with this release.
    pub fn builtin() -> RiskList {
        // The shipped file is checked by a test; failing here would be a build defect.
        RiskList::parse("built-in risk.csv", BUILTIN).expect("the built-in risk list is valid")
    }

    /// Parses a list; every bad row is an error naming file and line (nothing is guessed).
    pub fn parse(name: &str, text: &str) -> Result<RiskList, RiskListError> {
        let err = |line: u64, reason: String| RiskListError { file: name.to_string(), line, reason };
        let mut entries: Vec<RiskEntry> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        let mut header = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i as u64 + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if !header {
                if l.replace(' ', "") != "prefix,tier,category,note" {
                    return Err(err(
                        line,
                        format!("expected the header prefix,tier,category,note, found {l:?}"),
                    ));
                }
                header = true;
                continue;
            }
            let mut cols = l.splitn(4, ',');
            let prefix = cols.next().unwrap_or("").trim();
            let tier = cols.next().unwrap_or("").trim();
            let category = cols.next().unwrap_or("").trim();
            let note = cols.next().unwrap_or("").trim().trim_matches('"');
            if prefix.is_empty() || prefix.len() > 15 || !prefix.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err(line, format!("prefix must be 1-15 digits without '+', found {prefix:?}")));
            }
            let tier = RiskTier::parse(tier).ok_or_else(|| {
                err(line, format!("tier must be low, medium, high or critical, found {tier:?}"))
            })?;
            if category.is_empty() {
                return Err(err(line, "category is empty".into()));
            }
            if let Some(first) = seen.insert(prefix.to_string(), line) {
                return Err(err(line, format!("prefix {prefix} is listed twice (first on line {first})")));
            }
            entries.push(RiskEntry {
                prefix: prefix.to_string(),
                tier,
                category: category.to_string(),
                note: note.to_string(),
            });
        }
        if !header {
            return Err(err(1, "empty risk list: expected the header prefix,tier,category,note".into()));
        }
        Ok(RiskList { source: name.to_string(), entries })
    }

    /// Reads a list from a file.
    pub fn load(path: &std::path::Path) -> Result<RiskList, RiskListError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RiskListError {
            file: name.clone(),
            line: 0,
            reason: e.to_string(),
        })?;
        RiskList::parse(&name, &text)
    }
}

impl fmt::Display for RiskEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{} {} ({})", self.prefix, self.tier, self.category)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_list_loads() {
        let l = RiskList::builtin();
        assert!(l.entries.len() > 100);
        let tl = l.entries.iter().find(|e| e.prefix == "670").unwrap();
        assert_eq!(tl.tier, RiskTier::Critical);
    }

    #[test]
    fn bad_rows_name_the_line() {
        let e = RiskList::parse(
            "r.csv",
            "# c\nprefix,tier,category,note\n670,critical,irsf,x\n+53,high,irsf,y\n",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "r.csv:4: prefix must be 1-15 digits without '+', found \"+53\"");
        let e = RiskList::parse("r.csv", "prefix,tier,category,note\n670,severe,irsf,x\n").unwrap_err();
        assert_eq!(e.to_string(), "r.csv:2: tier must be low, medium, high or critical, found \"severe\"");
        let e =
            RiskList::parse("r.csv", "prefix,tier,category,note\n670,high,a,x\n670,low,b,y\n").unwrap_err();
        assert_eq!(e.to_string(), "r.csv:3: prefix 670 is listed twice (first on line 2)");
    }
}
