//! The byte records kept in Redis and carried on its channels: a message's
//! body (publisher and payload) and a presence member. Binary-safe:
//! length-prefixed fields, the payload last.

use switchboard_core::protocol::{Data, Member, Sender, Text};

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn opt_field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            field(out, b);
        }
    }
}

fn take_field<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = input.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (bytes, rest) = rest.split_at(len);
    *input = rest;
    Some(bytes)
}

fn take_opt<'a>(input: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    let (flag, rest) = input.split_first()?;
    *input = rest;
    match flag {
        0 => Some(None),
        1 => take_field(input).map(Some),
        _ => None,
    }
}

fn text(bytes: &[u8]) -> Option<Text<'_>> {
    std::str::from_utf8(bytes).ok().map(Text::Borrowed)
}

/// A message body: its publisher (`None` for server-side publishes) and payload.
pub(super) fn encode_body(from: Option<(&str, Option<&str>)>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    match from {
        None => out.push(0),
        Some((client, user)) => {
            out.push(1);
            field(&mut out, client.as_bytes());
            opt_field(&mut out, user.map(str::as_bytes));
        }
    }
    out.extend_from_slice(data);
    out
}

/// The inverse of [`encode_body`].
pub(super) fn decode_body(mut input: &[u8]) -> Option<(Option<Sender<'_>>, &[u8])> {
    let (flag, rest) = input.split_first()?;
    input = rest;
    let from = match flag {
        0 => None,
        1 => {
            let client = text(take_field(&mut input)?)?;
            let user = match take_opt(&mut input)? {
                Some(u) => Some(text(u)?),
                None => None,
            };
            Some(Sender { client, user })
        }
        _ => return None,
    };
    Some((from, input))
}

/// A presence member record.
pub(super) fn encode_member(member: &Member<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    field(&mut out, member.client.as_bytes());
    opt_field(&mut out, member.user.as_ref().map(|u| u.as_bytes()));
    opt_field(&mut out, member.info.as_ref().map(|i| &i[..]));
    out
}

/// The inverse of [`encode_member`].
pub(super) fn decode_member(mut input: &[u8]) -> Option<Member<'_>> {
    let client = text(take_field(&mut input)?)?;
    let user = match take_opt(&mut input)? {
        Some(u) => Some(text(u)?),
        None => None,
    };
    let info = take_opt(&mut input)?.map(Data::Borrowed);
    Some(Member { client, user, info })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_members_round_trip() {
        for from in [None, Some(("n1-0", None)), Some(("n1-1", Some("alice")))] {
            for data in [&b""[..], b"{\"a\":1}", &[0, 1, 255]] {
                let body = encode_body(from, data);
                let (f, d) = decode_body(&body).expect("decodes");
                assert_eq!(d, data);
                assert_eq!(f.as_ref().map(|s| (&*s.client, s.user.as_deref())), from);
            }
        }
        let m = Member {
            client: Text::Borrowed("n1-2"),
            user: Some(Text::Borrowed("bob")),
            info: Some(Data::Borrowed(b"{\"x\":1}")),
        };
        let rec = encode_member(&m);
        assert_eq!(decode_member(&rec), Some(m));
        assert_eq!(decode_member(&rec[..rec.len() - 1]), None);
        assert_eq!(decode_body(&[7]), None);
    }
}
