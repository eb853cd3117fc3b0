//! IMAP4rev1 syntax, as much as a mail fetcher uses: tokens, sequence sets, SEARCH keys and FETCH
//! items. Parsing is apart from the session so it can be tested on strings.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Atom(String),
    Quoted(String),
    List(Vec<Token>),
}

impl Token {
    pub fn text(&self) -> Option<&str> {
        match self {
            Token::Atom(s) | Token::Quoted(s) => Some(s),
            Token::List(_) => None,
        }
    }
}

/// Splits arguments into atoms, quoted strings and parenthesised lists. Brackets belong to their
/// atom, spaces included (`BODY.PEEK[HEADER.FIELDS (FROM)]`).
pub fn tokenize(input: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = input.chars().collect();
    let mut pos = 0;
    let tokens = tokens_until(&chars, &mut pos, None)?;
    (pos >= chars.len()).then_some(tokens)
}

fn tokens_until(chars: &[char], pos: &mut usize, close: Option<char>) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    loop {
        while *pos < chars.len() && chars[*pos] == ' ' {
            *pos += 1;
        }
        let Some(&c) = chars.get(*pos) else {
            return close.is_none().then_some(out);
        };
        if Some(c) == close {
            *pos += 1;
            return Some(out);
        }
        match c {
            '(' => {
                *pos += 1;
                out.push(Token::List(tokens_until(chars, pos, Some(')'))?));
            }
            ')' => return None,
            '"' => {
                *pos += 1;
                let mut s = String::new();
                loop {
                    match chars.get(*pos)? {
                        '"' => break,
                        '\\' => {
                            *pos += 1;
                            s.push(*chars.get(*pos)?);
                        }
                        other => s.push(*other),
                    }
                    *pos += 1;
                }
                *pos += 1;
                out.push(Token::Quoted(s));
            }
            _ => {
                let mut s = String::new();
                let mut depth = 0usize;
                while let Some(&c) = chars.get(*pos) {
                    if depth == 0 && (c == ' ' || c == '(' || c == ')') {
                        break;
                    }
                    match c {
                        '[' => depth += 1,
                        ']' => depth = depth.checked_sub(1)?,
                        _ => {}
                    }
                    s.push(c);
                    *pos += 1;
                }
                if depth != 0 {
                    return None;
                }
                out.push(Token::Atom(s));
            }
        }
    }
}

/// A sequence set over numbers where `*` is the largest; `n:*` always reaches the largest, even
/// when `n` is beyond it (RFC 3501 §6.4.8: fetchers rely on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSet(Vec<(Bound, Bound)>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Number(u32),
    Star,
}

impl SequenceSet {
    pub fn parse(text: &str) -> Option<Self> {
        let bound = |s: &str| -> Option<Bound> {
            if s == "*" {
                Some(Bound::Star)
            } else {
                s.parse::<u32>().ok().filter(|n| *n > 0).map(Bound::Number)
            }
        };
        let ranges = text
            .split(',')
            .map(|part| match part.split_once(':') {
                Some((a, b)) => Some((bound(a)?, bound(b)?)),
                None => bound(part).map(|b| (b, b)),
            })
            .collect::<Option<Vec<_>>>()?;
        (!ranges.is_empty()).then_some(Self(ranges))
    }

    pub fn contains(&self, n: u32, largest: u32) -> bool {
        let value = |b: Bound| match b {
            Bound::Number(v) => v,
            Bound::Star => largest,
        };
        self.0.iter().any(|&(a, b)| {
            let (lo, hi) = (value(a).min(value(b)), value(a).max(value(b)));
            (lo..=hi).contains(&n)
        })
    }
}

/// SEARCH keys a fetcher sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    Flag(&'static str, bool),
    Uid(SequenceSet),
    Seq(SequenceSet),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    And(Vec<SearchKey>),
}

pub fn parse_search(tokens: &[Token]) -> Option<SearchKey> {
    let mut iter = tokens.iter().peekable();
    if iter
        .peek()
        .and_then(|t| t.text())
        .is_some_and(|t| t.eq_ignore_ascii_case("CHARSET"))
    {
        iter.next();
        iter.next()?;
    }
    let mut keys = Vec::new();
    while iter.peek().is_some() {
        keys.push(search_key(&mut iter)?);
    }
    match keys.len() {
        0 => None,
        1 => keys.pop(),
        _ => Some(SearchKey::And(keys)),
    }
}

fn search_key<'a>(iter: &mut impl Iterator<Item = &'a Token>) -> Option<SearchKey> {
    let token = iter.next()?;
    let word = match token {
        Token::List(inner) => return parse_search(inner),
        other => other.text()?.to_ascii_uppercase(),
    };
    let flag = |name: &'static str, set: bool| Some(SearchKey::Flag(name, set));
    match word.as_str() {
        "ALL" => Some(SearchKey::All),
        "SEEN" => flag("\\Seen", true),
        "UNSEEN" => flag("\\Seen", false),
        "FLAGGED" => flag("\\Flagged", true),
        "UNFLAGGED" => flag("\\Flagged", false),
        "DELETED" => flag("\\Deleted", true),
        "UNDELETED" => flag("\\Deleted", false),
        "ANSWERED" => flag("\\Answered", true),
        "UNANSWERED" => flag("\\Answered", false),
        "DRAFT" => flag("\\Draft", true),
        "UNDRAFT" => flag("\\Draft", false),
        "UID" => Some(SearchKey::Uid(SequenceSet::parse(iter.next()?.text()?)?)),
        "NOT" => Some(SearchKey::Not(Box::new(search_key(iter)?))),
        "OR" => {
            let a = search_key(iter)?;
            let b = search_key(iter)?;
            Some(SearchKey::Or(Box::new(a), Box::new(b)))
        }
        other => SequenceSet::parse(other).map(SearchKey::Seq),
    }
}

impl SearchKey {
    pub fn matches(&self, m: &MessageView<'_>) -> bool {
        match self {
            SearchKey::All => true,
            SearchKey::Flag(name, set) => m.flags.iter().any(|f| f == name) == *set,
            SearchKey::Uid(set) => set.contains(m.uid, m.largest_uid),
            SearchKey::Seq(set) => set.contains(m.seq, m.count),
            SearchKey::Not(k) => !k.matches(m),
            SearchKey::Or(a, b) => a.matches(m) || b.matches(m),
            SearchKey::And(keys) => keys.iter().all(|k| k.matches(m)),
        }
    }
}

/// What SEARCH needs to know of one message.
pub struct MessageView<'a> {
    pub seq: u32,
    pub uid: u32,
    pub count: u32,
    pub largest_uid: u32,
    pub flags: &'a [String],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Full,
    Header,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchItem {
    Uid,
    Flags,
    Size,
    InternalDate,
    /// `BODY[...]`, `BODY.PEEK[...]`, `RFC822`, `RFC822.HEADER`, `RFC822.TEXT`: the section, whether
    /// it marks the message \Seen, and the name used in the response.
    Body {
        section: Section,
        peek: bool,
        name: &'static str,
    },
}

pub fn parse_fetch_items(tokens: &[Token]) -> Option<Vec<FetchItem>> {
    let words: Vec<String> = match tokens {
        [Token::List(inner)] => inner
            .iter()
            .map(|t| t.text().map(str::to_ascii_uppercase))
            .collect::<Option<_>>()?,
        [single] => vec![single.text()?.to_ascii_uppercase()],
        _ => return None,
    };
    let mut items = Vec::new();
    for word in &words {
        match word.as_str() {
            "ALL" | "FAST" | "FULL" => {
                items.extend([FetchItem::Flags, FetchItem::InternalDate, FetchItem::Size]);
            }
            other => items.push(fetch_item(other)?),
        }
    }
    (!items.is_empty()).then_some(items)
}

fn fetch_item(word: &str) -> Option<FetchItem> {
    let body = |section, peek, name| {
        Some(FetchItem::Body {
            section,
            peek,
            name,
        })
    };
    match word {
        "UID" => Some(FetchItem::Uid),
        "FLAGS" => Some(FetchItem::Flags),
        "RFC822.SIZE" => Some(FetchItem::Size),
        "INTERNALDATE" => Some(FetchItem::InternalDate),
        "RFC822" => body(Section::Full, false, "RFC822"),
        "RFC822.HEADER" => body(Section::Header, true, "RFC822.HEADER"),
        "RFC822.TEXT" => body(Section::Text, false, "RFC822.TEXT"),
        "BODY[]" => body(Section::Full, false, "BODY[]"),
        "BODY.PEEK[]" => body(Section::Full, true, "BODY[]"),
        "BODY[HEADER]" => body(Section::Header, false, "BODY[HEADER]"),
        "BODY.PEEK[HEADER]" => body(Section::Header, true, "BODY[HEADER]"),
        "BODY[TEXT]" => body(Section::Text, false, "BODY[TEXT]"),
        "BODY.PEEK[TEXT]" => body(Section::Text, true, "BODY[TEXT]"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_brackets_in_atoms() {
        let tokens = tokenize("1:* (UID BODY.PEEK[HEADER.FIELDS (FROM TO)]) \"a \\\"b\"").unwrap();
        assert_eq!(tokens[0], Token::Atom("1:*".into()));
        assert_eq!(
            tokens[1],
            Token::List(vec![
                Token::Atom("UID".into()),
                Token::Atom("BODY.PEEK[HEADER.FIELDS (FROM TO)]".into())
            ])
        );
        assert_eq!(tokens[2], Token::Quoted("a \"b".into()));
        assert_eq!(tokenize("(unclosed"), None);
        assert_eq!(tokenize("a]"), None);
    }

    #[test]
    fn star_ranges_reach_the_largest() {
        let set = SequenceSet::parse("5:*").unwrap();
        assert!(
            set.contains(3, 3),
            "n:* includes the largest even when n > largest"
        );
        assert!(!set.contains(2, 3));
        let set = SequenceSet::parse("1,3:4").unwrap();
        assert!(set.contains(1, 9) && set.contains(4, 9) && !set.contains(2, 9));
        assert_eq!(SequenceSet::parse("0"), None);
        assert_eq!(SequenceSet::parse("a:b"), None);
    }

    #[test]
    fn search_keys_combine() {
        let key = parse_search(&tokenize("UNSEEN UID 2:*").unwrap()).unwrap();
        let flags = vec![];
        let view = MessageView {
            seq: 2,
            uid: 7,
            count: 2,
            largest_uid: 7,
            flags: &flags,
        };
        assert!(key.matches(&view));
        let seen = vec!["\\Seen".to_string()];
        let view = MessageView {
            flags: &seen,
            ..view
        };
        assert!(!key.matches(&view));
        assert_eq!(parse_search(&tokenize("BOGUS").unwrap()), None);
    }
}
