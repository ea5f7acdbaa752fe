//! Which keys a sync may touch: `--include` / `--exclude` globs on the relative key. Patterns follow glob
//! syntax where `*` also crosses `/` (`*.jpg` matches `a/b/c.jpg`), `?` is one character, `{a,b}` is
//! either, and `**` is accepted. Excluded keys are neither copied nor deleted.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result, Side};

/// Compiled include and exclude patterns.
#[derive(Debug, Clone)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl Filter {
    /// Compiles the patterns; a malformed one is an error naming it.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        let build = |pats: &[String], what: &str| -> Result<GlobSet> {
            let mut b = GlobSetBuilder::new();
            for p in pats {
                let g = Glob::new(p).map_err(|e| Error::Config {
                    side: Side::Source,
                    message: format!("bad {what} pattern {p:?}: {e}"),
                })?;
                b.add(g);
            }
            b.build().map_err(|e| Error::Config {
                side: Side::Source,
                message: format!("bad {what} patterns: {e}"),
            })
        };
        Ok(Filter {
            include: (!include.is_empty())
                .then(|| build(include, "--include"))
                .transpose()?,
            exclude: build(exclude, "--exclude")?,
        })
    }

    /// Whether a relative key passes the filters.
    pub fn allows(&self, key: &str) -> bool {
        !self.exclude.is_match(key) && self.include.as_ref().is_none_or(|i| i.is_match(key))
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(inc: &[&str], exc: &[&str]) -> Filter {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Filter::new(&v(inc), &v(exc)).unwrap()
    }

    #[test]
    fn include_and_exclude() {
        let all = f(&[], &[]);
        assert!(all.allows("x/y") && all.is_empty());
        let jpg = f(&["*.jpg"], &["tmp/*"]);
        assert!(jpg.allows("a/b/c.jpg"));
        assert!(!jpg.allows("a/b/c.png"));
        assert!(!jpg.allows("tmp/c.jpg"));
        assert!(Filter::new(&["a[".into()], &[]).is_err());
    }
}
