//! Any config file: parsing never panics, and a file that parses configures a provider
//! (clamping its numbers) without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let Ok(file) = toml::from_str::<pplx_setup::config::FileConfig>(text) else { return };
    let mut config = provider_perplexity::PerplexityConfig::default();
    for (alias, model) in &file.aliases {
        config.aliases.insert(alias.clone(), model.clone());
    }
    if pplx_setup::apply_file(&mut config, &file).is_ok() {
        let _ = config.timeouts_for("sonar-deep-research");
        let _ = resilience::backoff::later(tokio::time::Instant::now(), config.timeouts.total);
    }
});
