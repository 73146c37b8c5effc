//! The Search API (`POST /search`): ranked web results, no answer. Its request is the typed
//! [`SearchRequest`](crate::SearchRequest).

use chat_core::{Error, SearchResult};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::wire;

/// Where search requests go.
pub(crate) const PATH: &str = "/search";

/// The results of a whole response body.
pub(crate) fn results(body: &[u8]) -> Result<Vec<SearchResult>, Error> {
    #[derive(Deserialize)]
    struct Results<'a> {
        #[serde(borrow, default)]
        results: Option<&'a RawValue>,
    }
    let parsed: Results<'_> = serde_json::from_slice(body)
        .map_err(|error| Error::protocol(format!("bad search response: {error}")))?;
    Ok(wire::sources(None, parsed.results)?.search_results)
}
