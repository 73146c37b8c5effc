//! The search filters of the command line (`--domain`, `--recency`, `--after`, `--before`),
//! checked before anything is sent: on the Agent API the provider sends them inside the
//! `web_search` tool, on chat completions as Sonar's top-level fields.

use provider_perplexity::{Recency, SearchFilters};

use crate::Args;

/// The most domains a search takes (Perplexity's limit).
const MAX_DOMAINS: usize = 20;

/// The longest domain name.
const MAX_DOMAIN_CHARS: usize = 253;

/// The filters the arguments ask for (none: the default, no filter).
///
/// # Errors
/// What is wrong with an argument, to say as a usage error.
pub(crate) fn from_args(args: &Args) -> Result<SearchFilters, String> {
    let mut filters = SearchFilters::default();
    if args.domains.len() > MAX_DOMAINS {
        return Err(format!(
            "--domain: at most {MAX_DOMAINS} domains, not {}",
            args.domains.len()
        ));
    }
    for domain in &args.domains {
        filters.search_domain_filter.push(domain_name(domain)?);
    }
    if let Some(recency) = &args.recency {
        filters.search_recency_filter =
            Some(Recency::parse(recency).map_err(|error| format!("--recency: {error}"))?);
    }
    if let Some(after) = &args.after {
        filters.search_after_date_filter = Some(date("--after", after)?);
    }
    if let Some(before) = &args.before {
        filters.search_before_date_filter = Some(date("--before", before)?);
    }
    Ok(filters)
}

/// A domain as the search takes it: no scheme, no path, lowercase; a leading `-` excludes it.
fn domain_name(given: &str) -> Result<String, String> {
    let (exclude, rest) = match given.trim().strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", given.trim()),
    };
    let host = rest
        .strip_prefix("https://")
        .or_else(|| rest.strip_prefix("http://"))
        .unwrap_or(rest);
    let host = host
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= MAX_DOMAIN_CHARS
        && host.contains('.')
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-".contains(&byte));
    if valid {
        Ok(format!("{exclude}{host}"))
    } else {
        Err(format!(
            "--domain {given:?}: a domain name such as nasa.gov (or -reddit.com to leave one out)"
        ))
    }
}

/// A date as the filters take it, `MM/DD/YYYY`, from `YYYY-MM-DD` or `M/D/YYYY`.
fn date(flag: &str, given: &str) -> Result<String, String> {
    let given = given.trim();
    let parts: Vec<&str> = given.split(['-', '/']).collect();
    let numbers: Option<Vec<u32>> = parts.iter().map(|part| part.parse().ok()).collect();
    let (year, month, day) = match (numbers.as_deref(), given.contains('-')) {
        (Some(&[year, month, day]), true) => (year, month, day),
        (Some(&[month, day, year]), false) => (year, month, day),
        _ => {
            return Err(format!(
                "{flag} {given:?}: a date as 2026-03-31 or 3/31/2026"
            ));
        }
    };
    let days = match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1900..=2200).contains(&year) || !(1..=12).contains(&month) || !(1..=days).contains(&day) {
        return Err(format!("{flag} {given:?}: no such date"));
    }
    Ok(format!("{month:02}/{day:02}/{year}"))
}

#[cfg(test)]
mod tests {
    use super::{date, domain_name};

    #[test]
    fn domains_lose_their_scheme_and_path_and_keep_their_exclusion() {
        assert_eq!(domain_name("nasa.gov").unwrap(), "nasa.gov");
        assert_eq!(domain_name("-Reddit.com").unwrap(), "-reddit.com");
        assert_eq!(
            domain_name("https://www.nature.com/articles").unwrap(),
            "www.nature.com"
        );
        for bad in ["", "-", "localhost", "a b.com", "x".repeat(300).as_str()] {
            assert!(domain_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_are_read_either_way_and_checked() {
        assert_eq!(date("--after", "2026-03-31").unwrap(), "03/31/2026");
        assert_eq!(date("--after", "3/1/2026").unwrap(), "03/01/2026");
        assert_eq!(date("--after", "2024-02-29").unwrap(), "02/29/2024");
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "31/3/2026",
            "yesterday",
            "2026-03",
            "1/1/99999999999",
        ] {
            assert!(date("--after", bad).is_err(), "{bad}");
        }
    }
}
