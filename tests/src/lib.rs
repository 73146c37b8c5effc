//! Cross-crate tests of the workspace, one module per concern; data-driven cases live in
//! `tests/data/`.

#[cfg(test)]
mod agent_default;
#[cfg(test)]
mod cache;
#[cfg(test)]
mod connections;
#[cfg(test)]
mod events;
#[cfg(test)]
mod hostile;
#[cfg(test)]
mod operators;
#[cfg(test)]
mod provider;
#[cfg(test)]
mod resume;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sse;
#[cfg(test)]
mod tools;
