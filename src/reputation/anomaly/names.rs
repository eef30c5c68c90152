//! Whether a display name fits the address it is shown for
//! (`display_name_mismatch`): the ways people's addresses are made of
//! their names.

/// A display name that does not fit the address it is shown for:
/// "Microsoft 365" <no-reply@x7.example>. It fits when one of its words
/// (3 letters or more) is in the address, when the local part is made of
/// its words' beginnings in order or surname first (`mcfletch` for "Mike
/// C. Fletcher", `lawremi` for "Michael Lawrence", `ap` for "Accounts
/// Payable"; two words or four letters of one at least), when a word
/// holds the whole local part (`staack` for "staackjt"), or when it names
/// a team in generic words ("Customer Service"). Letters with diacritics
/// compare as their base letters (`krstic` for "Ivan Krstić"), and
/// umlauts and their Nordic kin also as German and Nordic addresses spell
/// them (`ploederl` for "Martin Plöderl", `avar` for "Ævar"). A name
/// without words (initials, an address) says nothing.
pub fn name_mismatch(name: &str, address: &str) -> bool {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let letters = |s: &str| -> String {
        deunicode::deunicode(s)
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphabetic())
            .collect()
    };
    let local = letters(local);
    let addr: String = deunicode::deunicode(&format!("{local}{domain}"))
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let tokens = name_tokens(name);
    let words: Vec<&str> = tokens
        .iter()
        .map(String::as_str)
        .filter(|w| w.len() >= 3)
        .collect();
    if words.is_empty() || words.iter().all(|w| ROLE_WORDS.contains(w)) {
        return false;
    }
    if fits(&tokens, &local, &addr) {
        return false;
    }
    // The other spellings of umlauts: only for a name that has them.
    let respelled = respell(name);
    !respelled.is_some_and(|n| fits(&name_tokens(&n), &local, &addr))
}

/// Whether the name's `tokens` fit the address (`local`: its local part's
/// letters; `addr`: its letters and digits).
fn fits(tokens: &[String], local: &str, addr: &str) -> bool {
    // The beginnings are tried over the first six words (the search
    // grows with their number); every word is looked for in the address.
    let first = &tokens[..tokens.len().min(6)];
    tokens
        .iter()
        .any(|w| w.len() >= 3 && addr.contains(w.as_str()))
        || (local.len() >= 4 && tokens.iter().any(|t| t.contains(local)))
        || built_from(local, first)
        || {
            let mut surname_first = first.to_vec();
            surname_first.rotate_right(1);
            built_from(local, &surname_first)
        }
}

/// The name with its umlauts and Nordic letters spelt as German and Nordic
/// addresses spell them (ä → ae, ö and ø → oe, ü → ue, å → aa, æ → a):
/// `None` when it has none.
fn respell(name: &str) -> Option<String> {
    if !name.contains(['ä', 'ö', 'ü', 'ø', 'å', 'æ', 'Ä', 'Ö', 'Ü', 'Ø', 'Å', 'Æ']) {
        return None;
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            'ä' | 'Ä' => out.push_str("ae"),
            'ö' | 'Ö' | 'ø' | 'Ø' => out.push_str("oe"),
            'ü' | 'Ü' => out.push_str("ue"),
            'å' | 'Å' => out.push_str("aa"),
            'æ' | 'Æ' => out.push('a'),
            c => out.push(c),
        }
    }
    Some(out)
}

/// The words of a display name, folded to ASCII lower case, split at
/// anything not a letter; 32 at most.
pub(super) fn name_tokens(name: &str) -> Vec<String> {
    deunicode::deunicode(name)
        .to_ascii_lowercase()
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|t| !t.is_empty())
        .take(32)
        .map(str::to_string)
        .collect()
}

/// Whether `local` is the beginnings of `tokens`, in their order, some
/// left out: of two tokens at least, or four letters of one. One letter
/// between two of them may be a middle initial the name does not show
/// (`pcd` for "Peter Danenberg").
///
/// A search over the states (position in `local`, next token, tokens used
/// up to 2, longest beginning up to 4, middle initial still free), each
/// visited once: a hostile name and address (`aaaa…` against `aaa…ab`)
/// cost at most `local × tokens × 30` steps, not every way of cutting
/// `local` up. Local parts over 64 letters are no one's name.
fn built_from(local: &str, tokens: &[String]) -> bool {
    type State = (usize, usize, u8, u8, bool);
    let local = local.as_bytes();
    if local.is_empty() || local.len() > 64 {
        return false;
    }
    let mut seen: std::collections::HashSet<State> = std::collections::HashSet::new();
    let mut todo: Vec<State> = vec![(0, 0, 0, 0, true)];
    while let Some(state) = todo.pop() {
        if !seen.insert(state) {
            continue;
        }
        let (pos, tok, used, longest, spare) = state;
        if pos == local.len() {
            if used >= 2 || longest >= 4 {
                return true;
            }
            continue;
        }
        let Some(t) = tokens.get(tok) else {
            continue;
        };
        let rest = &local[pos..];
        let common = t
            .as_bytes()
            .iter()
            .zip(rest)
            .take_while(|(a, b)| a == b)
            .count();
        for n in 1..=common {
            let longest = longest.max(n.min(4) as u8);
            todo.push((pos + n, tok + 1, (used + 1).min(2), longest, spare));
        }
        todo.push((pos, tok + 1, used, longest, spare));
        if spare && used >= 1 && rest.len() > 1 {
            todo.push((pos + 1, tok, used, longest, false));
        }
    }
    false
}

/// The words of a team's display name that name a function, not a person
/// or a brand.
const ROLE_WORDS: [&str; 40] = [
    "accounts",
    "account",
    "admissions",
    "billing",
    "bookings",
    "careers",
    "contact",
    "customer",
    "department",
    "desk",
    "enquiries",
    "events",
    "finance",
    "front",
    "help",
    "helpdesk",
    "hiring",
    "human",
    "info",
    "information",
    "inquiries",
    "marketing",
    "media",
    "office",
    "orders",
    "payable",
    "press",
    "receivable",
    "reception",
    "recruiting",
    "recruitment",
    "reservations",
    "resources",
    "sales",
    "service",
    "services",
    "shipping",
    "support",
    "team",
    "the",
];
