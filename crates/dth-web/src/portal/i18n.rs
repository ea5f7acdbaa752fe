//! The portal's languages and its one string catalog. Every string a page shows comes from the
//! catalog (`catalog/*.toml`, one file per area, each entry with `en` and `zh-CN`), looked up by
//! key from templates with `t("key", name=value…)`. The language is the user's choice when they
//! made one, else the best match of the browser's `Accept-Language`, else English.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// A language the portal speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    ZhCn,
}

impl Lang {
    /// Every language, in the order a language menu shows them.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// The BCP 47 tag (`en`, `zh-CN`), as stored per user and put in `<html lang>`.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language's own name, for the menu.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "简体中文",
        }
    }

    /// The language of a stored tag (`zh`, `zh-cn`, `zh-Hans`… are Chinese).
    pub fn from_tag(tag: &str) -> Option<Lang> {
        let tag = tag.trim().to_ascii_lowercase();
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        match primary {
            "en" => Some(Lang::En),
            // Traditional Chinese is not in the catalog; Simplified reads better than English.
            "zh" => Some(Lang::ZhCn),
            _ => None,
        }
    }

    /// The best language for an `Accept-Language` header: the first known one by quality.
    pub fn negotiate(accept_language: &str) -> Lang {
        let mut offers: Vec<(f32, usize, Lang)> = accept_language
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut fields = part.split(';');
                let lang = Lang::from_tag(fields.next()?)?;
                let q = fields
                    .find_map(|f| f.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                (q > 0.0).then_some((q, i, lang))
            })
            .collect();
        offers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        offers.first().map_or(Lang::En, |o| o.2)
    }
}

/// One catalog entry: the string in each language. `{name}` marks a value filled in by the page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// English.
    pub en: String,
    /// Simplified Chinese.
    #[serde(rename = "zh-CN")]
    pub zh_cn: String,
}

impl Entry {
    /// The string in `lang`.
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::ZhCn => &self.zh_cn,
        }
    }
}

/// The catalog's files (`catalog/*.toml`), compiled in (read from the source tree in debug builds).
#[derive(rust_embed::RustEmbed)]
#[folder = "src/portal/catalog/"]
struct CatalogFiles;

/// The catalog: every key with its strings.
pub type Catalog = BTreeMap<String, Entry>;

/// Parses catalog files into one catalog; a key defined twice, a missing language or a TOML
/// error names the file.
pub fn parse_catalog<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Catalog, String> {
    let mut all = Catalog::new();
    for (file, text) in files {
        let entries: BTreeMap<String, Entry> =
            toml::from_str(text).map_err(|e| format!("catalog/{file}: {e}"))?;
        for (key, entry) in entries {
            if entry.en.trim().is_empty() || entry.zh_cn.trim().is_empty() {
                return Err(format!("catalog/{file}: {key} has an empty string"));
            }
            if all.insert(key.clone(), entry).is_some() {
                return Err(format!("catalog/{file}: {key} is defined twice"));
            }
        }
    }
    Ok(all)
}

/// The compiled-in catalog.
pub static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let files: Vec<(String, String)> = CatalogFiles::iter()
        .filter_map(|name| {
            let f = CatalogFiles::get(&name)?;
            Some((
                name.to_string(),
                String::from_utf8_lossy(&f.data).into_owned(),
            ))
        })
        .collect();
    parse_catalog(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
        .expect("the compiled-in catalog parses")
});

/// The catalog's string for `key` in `lang` outside a template, its `{name}` holes filled (the
/// key itself when the catalog lacks it).
pub fn text(lang: Lang, key: &str, values: &[(&str, String)]) -> String {
    CATALOG
        .get(key)
        .map_or_else(|| key.to_string(), |e| fill(e.get(lang), values))
}

/// Fills `{name}` placeholders of `text` from `values`; unknown placeholders stay as they are.
pub fn fill(text: &str, values: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_the_browser_language() {
        assert_eq!(Lang::negotiate("zh-CN,zh;q=0.9,en;q=0.8"), Lang::ZhCn);
        assert_eq!(Lang::negotiate("en-US,en;q=0.9,zh-CN;q=0.8"), Lang::En);
        assert_eq!(Lang::negotiate("fr-FR, zh;q=0.5, en;q=0.4"), Lang::ZhCn);
        assert_eq!(Lang::negotiate("de"), Lang::En);
        assert_eq!(Lang::negotiate(""), Lang::En);
        assert_eq!(Lang::negotiate("zh;q=0, en;q=0.1"), Lang::En);
        assert_eq!(Lang::from_tag("zh-Hans"), Some(Lang::ZhCn));
    }

    #[test]
    fn the_catalog_has_every_string_in_both_languages() {
        assert!(CATALOG.len() > 20);
        for (key, e) in CATALOG.iter() {
            let holes = |s: &str| {
                let mut v: Vec<String> = s
                    .split('{')
                    .skip(1)
                    .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_string()))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(holes(&e.en), holes(&e.zh_cn), "{key}: placeholders differ");
        }
        let twice = [
            ("a.toml", "k = { en = \"A\", zh-CN = \"甲\" }"),
            ("b.toml", "k = { en = \"B\", zh-CN = \"乙\" }"),
        ];
        assert!(parse_catalog(twice).unwrap_err().contains("defined twice"));
        assert_eq!(
            fill("copied {n} of {m}", &[("n", "1".into()), ("m", "2".into())]),
            "copied 1 of 2"
        );
    }
}
