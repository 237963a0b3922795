//! A setting written as text that reads as a value (a size, a URL): parsed
//! once, when the configuration is read (or the setting is set), and kept
//! with the text as written, which `config show` prints back unchanged.
//!
//! A text that does not parse is kept with its error, so that the
//! configuration's validation reports it with its key and its file, as it
//! does every other bad value; a loaded configuration holds none.

use serde::{Deserialize, Serialize};

/// How a setting's text reads as a `Self`: the parser of that kind of
/// setting, run once.
pub trait FromSetting: Sized {
    fn from_setting(text: &str) -> Result<Self, String>;
}

/// A size in bytes: `100MB`, `512MiB`, `1G`, `4096`
/// ([`crate::support::text::parse_size`]).
impl FromSetting for u64 {
    fn from_setting(text: &str) -> Result<Self, String> {
        crate::support::text::parse_size(text).map_err(|e| e.to_string())
    }
}

/// A URL.
impl FromSetting for url::Url {
    fn from_setting(text: &str) -> Result<Self, String> {
        url::Url::parse(text).map_err(|e| e.to_string())
    }
}

/// A setting: its text, and the value it reads as (or why it does not).
#[derive(Clone)]
pub struct Setting<T> {
    text: String,
    value: Result<T, String>,
}

/// A size setting, in bytes.
pub type Size = Setting<u64>;

/// A URL setting.
pub type UrlSetting = Setting<url::Url>;

impl<T: FromSetting> Setting<T> {
    /// Parses `text`, once.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let value = T::from_setting(&text);
        Setting { text, value }
    }
}

impl<T> Setting<T> {
    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value, or why the text is not one (the parser's message, which
    /// quotes the text).
    pub fn value(&self) -> Result<&T, &str> {
        self.value.as_ref().map_err(String::as_str)
    }
}

impl Size {
    /// The size in bytes, or why the text is not one.
    pub fn bytes(&self) -> Result<u64, String> {
        self.value.clone()
    }
}

/// The text: what a setting is in messages and in `config show`.
impl<T> std::ops::Deref for Setting<T> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl<T: FromSetting> From<&str> for Setting<T> {
    fn from(text: &str) -> Self {
        Setting::new(text)
    }
}

impl<T: FromSetting> From<String> for Setting<T> {
    fn from(text: String) -> Self {
        Setting::new(text)
    }
}

impl<T> std::fmt::Display for Setting<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Two settings are the same when they are written the same.
impl<T> PartialEq for Setting<T> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<T> PartialEq<str> for Setting<T> {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl<T> PartialEq<&str> for Setting<T> {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

/// The text only: a URL's may hold a password, which whoever prints a
/// setting redacts (as for any text).
impl<T> std::fmt::Debug for Setting<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.text, f)
    }
}

impl<T> Serialize for Setting<T> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&self.text)
    }
}

impl<'de, T: FromSetting> Deserialize<'de> for Setting<T> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        String::deserialize(de).map(Setting::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_is_parsed_once_and_keeps_its_text() {
        let s = Size::new("8MiB");
        assert_eq!(s.bytes(), Ok(8 << 20));
        assert_eq!(s.text(), "8MiB");
        let bad = Size::new("lots");
        let e = bad.bytes().unwrap_err();
        assert!(e.contains("invalid size \"lots\""), "{e}");
        let u = UrlSetting::new("http://h:1");
        assert_eq!(u.value().unwrap().port(), Some(1));
        assert_eq!(u.text(), "http://h:1");
        assert_eq!(u, "http://h:1");
        assert!(UrlSetting::new("no scheme").value().is_err());
    }

    #[test]
    fn it_serialises_as_written() {
        #[derive(Serialize, Deserialize)]
        struct T {
            size: Size,
        }
        let t: T = toml::from_str("size = \"100 mb\"\n").unwrap();
        assert_eq!(t.size.bytes(), Ok(100_000_000));
        assert_eq!(toml::to_string(&t).unwrap(), "size = \"100 mb\"\n");
    }
}
