//! Borrow-or-own wrappers used inside frames.

use core::fmt;
use core::ops::Deref;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

#[cfg(feature = "alloc")]
use alloc::{borrow::ToOwned, string::String, vec::Vec};

/// A string inside a frame: borrowed from the input, or owned when the input
/// needed unescaping (only with `alloc`). Compares and hashes by content,
/// whichever variant holds it.
#[derive(Clone)]
pub enum Text<'a> {
    /// Borrowed from the decoded input or from the caller.
    Borrowed(&'a str),
    /// Owned copy (JSON escapes were resolved).
    #[cfg(feature = "alloc")]
    Owned(String),
}

impl<'a> Text<'a> {
    /// The text as `&str`.
    pub fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            #[cfg(feature = "alloc")]
            Text::Owned(s) => s,
        }
    }

    /// Detaches the text from its input.
    #[cfg(feature = "alloc")]
    pub fn into_owned(self) -> Text<'static> {
        match self {
            Text::Borrowed(s) => Text::Owned(s.to_owned()),
            Text::Owned(s) => Text::Owned(s),
        }
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text::Borrowed(s)
    }
}

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Text<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text<'_> {}

impl PartialOrd for Text<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text<'_> {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl core::hash::Hash for Text<'_> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text::Borrowed(v))
            }
            #[cfg(feature = "alloc")]
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text::Owned(v.to_owned()))
            }
            #[cfg(feature = "alloc")]
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text::Owned(v))
            }
        }
        d.deserialize_str(V)
    }
}

/// An opaque payload inside a frame (`data`, `info`). Compares and hashes
/// by content, whichever variant holds it.
#[derive(Clone)]
pub enum Data<'a> {
    /// Borrowed from the decoded input or from the caller.
    Borrowed(&'a [u8]),
    /// Owned (decoded from base64, or detached).
    #[cfg(feature = "alloc")]
    Owned(Vec<u8>),
}

impl<'a> Data<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Data::Borrowed(b) => b,
            #[cfg(feature = "alloc")]
            Data::Owned(b) => b,
        }
    }

    /// Detaches the payload from its input.
    #[cfg(feature = "alloc")]
    pub fn into_owned(self) -> Data<'static> {
        match self {
            Data::Borrowed(b) => Data::Owned(b.to_vec()),
            Data::Owned(b) => Data::Owned(b),
        }
    }
}

impl<'a> From<&'a [u8]> for Data<'a> {
    fn from(b: &'a [u8]) -> Self {
        Data::Borrowed(b)
    }
}

impl Deref for Data<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Data<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Data<'_> {}

impl core::hash::Hash for Data<'_> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for Data<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => write!(f, "b{s:?}"),
            Err(_) => write!(f, "{:?}", self.as_bytes()),
        }
    }
}

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_bytes())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Data<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Data::Borrowed(v))
            }
            #[cfg(feature = "alloc")]
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Data::Owned(v.to_vec()))
            }
            #[cfg(feature = "alloc")]
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(Data::Owned(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// The most elements a decoded list (`messages`, `members`) holds without
/// an allocator; the rest of a longer list is read and dropped, and the
/// list says it was [`Seq::is_truncated`].
pub const MAX_DECODED_SEQ: usize = 8;

/// The owned storage of a decoded list: a `Vec` with `alloc`, a
/// fixed-capacity `heapless::Vec` of [`MAX_DECODED_SEQ`] without.
#[cfg(feature = "alloc")]
pub type SeqBuf<T> = Vec<T>;
/// The owned storage of a decoded list: a `Vec` with `alloc`, a
/// fixed-capacity `heapless::Vec` of [`MAX_DECODED_SEQ`] without.
///
/// Without `alloc` it is wrapped in `ManuallyDrop`: the elements are frames
/// that only borrow (no drop glue to skip), and a frame holding it then has
/// no destructor that would keep its borrows alive to the end of the scope
/// (heapless cannot mark its `Drop` `may_dangle` as `Vec` does).
#[cfg(not(feature = "alloc"))]
pub type SeqBuf<T> = core::mem::ManuallyDrop<heapless::Vec<T, MAX_DECODED_SEQ>>;

/// A list inside a frame (`messages`, `members`): a borrowed slice when
/// encoding, an owned list when decoding ([`SeqBuf`]: growable with `alloc`;
/// without it at most [`MAX_DECODED_SEQ`] elements, see [`Seq::Truncated`]).
/// Compares by content, whichever variant holds it.
#[derive(Clone)]
pub enum Seq<'a, T> {
    /// Borrowed slice (encoding side).
    Borrowed(&'a [T]),
    /// Owned list (decoding side).
    Owned(SeqBuf<T>),
    /// The first [`MAX_DECODED_SEQ`] elements of a longer list (decoding
    /// without an allocator).
    #[cfg(not(feature = "alloc"))]
    Truncated(SeqBuf<T>),
}

impl<T> Seq<'_, T> {
    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Seq::Borrowed(s) => s,
            Seq::Owned(v) => v,
            #[cfg(not(feature = "alloc"))]
            Seq::Truncated(v) => v,
        }
    }

    /// Did the decoded list hold more elements than it keeps (only without
    /// an allocator)?
    pub fn is_truncated(&self) -> bool {
        #[cfg(not(feature = "alloc"))]
        if let Seq::Truncated(_) = self {
            return true;
        }
        false
    }
}

#[cfg(feature = "alloc")]
type SeqItems<T> = Vec<T>;
#[cfg(not(feature = "alloc"))]
type SeqItems<T> = heapless::Vec<T, MAX_DECODED_SEQ>;

/// Builds a decoded [`Seq`], keeping what fits.
pub(crate) struct SeqBuilder<T> {
    items: SeqItems<T>,
    #[cfg(not(feature = "alloc"))]
    truncated: bool,
}

impl<T> SeqBuilder<T> {
    pub(crate) fn new() -> Self {
        SeqBuilder {
            items: SeqItems::new(),
            #[cfg(not(feature = "alloc"))]
            truncated: false,
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        #[cfg(feature = "alloc")]
        self.items.push(item);
        #[cfg(not(feature = "alloc"))]
        if self.items.push(item).is_err() {
            self.truncated = true;
        }
    }

    pub(crate) fn finish<'a>(self) -> Seq<'a, T> {
        #[cfg(not(feature = "alloc"))]
        {
            let items = core::mem::ManuallyDrop::new(self.items);
            if self.truncated {
                Seq::Truncated(items)
            } else {
                Seq::Owned(items)
            }
        }
        #[cfg(feature = "alloc")]
        Seq::Owned(self.items)
    }
}

impl<T> Default for Seq<'_, T> {
    fn default() -> Self {
        Seq::Borrowed(&[])
    }
}

impl<T> Deref for Seq<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: PartialEq> PartialEq for Seq<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Eq> Eq for Seq<'_, T> {}

impl<T: fmt::Debug> fmt::Debug for Seq<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl<T: Serialize> Serialize for Seq<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let items = self.as_slice();
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl<'de, 'a, T: Deserialize<'de> + 'a> Deserialize<'de> for Seq<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(core::marker::PhantomData<(&'a (), T)>);
        impl<'de, 'a, T: Deserialize<'de> + 'a> Visitor<'de> for V<'a, T> {
            type Value = Seq<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = SeqBuilder::new();
                #[cfg(feature = "alloc")]
                out.items.reserve(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(out.finish())
            }
        }
        d.deserialize_seq(V(core::marker::PhantomData))
    }
}
