//! `pplx-sim` on the wire: formats, errors, faults and the request log, seen by a plain
//! hyper client and `sse-parse`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use pplx_sim::{Ending, Fault, LineEnding, Pace, SimConfig, Simulator, Target};
use serde_json::{Value, json};
use sse_parse::{EventParser, Item};

const QUESTION: &str = "Explain quantum computing";

async fn sim() -> Simulator {
    let mut config = SimConfig::default();
    config.keys = vec!["key-a".into(), "key-b".into()];
    config.pace = Pace::instant();
    // Both formats are checked here; the retirement of chat completions has its own test.
    config.legacy_sonar = true;
    Simulator::start(config).await.unwrap()
}

fn client(http2: bool) -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(http2)
        .build_http()
}

async fn post(
    sim: &Simulator,
    path: &str,
    key: &str,
    body: Value,
    http2: bool,
) -> Response<Incoming> {
    let request = Request::post(format!("{}{path}", sim.base_url()))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    client(http2).request(request).await.unwrap()
}

fn sonar(stream: bool) -> Value {
    json!({"model": "sonar", "messages": [{"role": "user", "content": QUESTION}], "stream": stream})
}

/// The raw body frames until the end or an error, and whether it ended in an error.
async fn read_frames(response: Response<Incoming>) -> (Vec<Bytes>, bool) {
    let mut body = response.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => frames.extend(frame.into_data().ok()),
            Err(_) => return (frames, true),
        }
    }
    (frames, false)
}

/// (event type, data) of every event in `frames`.
fn events(frames: &[Bytes]) -> Vec<(String, String)> {
    let mut parser = EventParser::new();
    let mut out = Vec::new();
    for frame in frames {
        parser
            .feed(frame, |item| {
                if let Item::Event(event) = item {
                    out.push((
                        event.event_type_str().unwrap().to_owned(),
                        event.data_lossy().into_owned(),
                    ));
                }
            })
            .unwrap();
    }
    out
}

fn json_events(frames: &[Bytes]) -> Vec<Value> {
    events(frames)
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect()
}

fn sonar_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn a_sonar_stream_is_the_recorded_format_and_adds_up_to_the_expected_text() {
    let sim = sim().await;
    let response = post(&sim, "/chat/completions", "key-a", sonar(true), false).await;
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let (frames, broken) = read_frames(response).await;
    assert!(!broken);
    let raw: Vec<u8> = frames.concat();
    assert!(
        !String::from_utf8_lossy(&raw).contains("[DONE]"),
        "no [DONE] by default"
    );
    let chunks = json_events(&frames);
    let expected = sim.expected_text("sonar", &[QUESTION], None);
    assert_eq!(sonar_text(&chunks), expected);
    let (last, content) = chunks.split_last().unwrap();
    for (index, chunk) in content.iter().enumerate() {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(
            chunk["citations"], last["citations"],
            "every chunk repeats the citations"
        );
        assert_eq!(chunk["search_results"], last["search_results"]);
        assert_eq!(
            chunk["usage"]["cost"]["total_cost"], 0,
            "cost is zero until the end"
        );
        let so_far = sonar_text(&chunks[..=index]);
        assert_eq!(chunk["choices"][0]["message"]["content"], so_far.as_str());
    }
    assert_eq!(last["object"], "chat.completion.done");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"]["content"], "");
    assert_eq!(last["choices"][0]["message"]["content"], expected.as_str());
    assert!(last["usage"]["cost"]["total_cost"].as_f64().unwrap() > 0.0);
    assert!(last["citations"].as_array().unwrap().len() >= 3);
    sim.wait_idle().await;
    let log = sim.log();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].key_index, log[0].stream, log[0].status),
        (Some(0), true, 200)
    );
    assert_eq!(
        (log[0].events_sent, log[0].ending),
        (chunks.len(), Ending::Complete)
    );
}

#[tokio::test]
async fn max_tokens_options_reasoning_and_the_switches() {
    let sim = sim().await;
    let mut body = sonar(true);
    body["max_tokens"] = 7.into();
    body["return_related_questions"] = true.into();
    body["return_images"] = true.into();
    body["search_recency_filter"] = "week".into();
    body["search_domain_filter"] = json!(["nasa.gov", "-reddit.com"]);
    let (frames, _) =
        read_frames(post(&sim, "/chat/completions", "key-a", body, false).await).await;
    let chunks = json_events(&frames);
    let last = chunks.last().unwrap();
    assert_eq!(
        sonar_text(&chunks),
        sim.expected_text("sonar", &[QUESTION], Some(7))
    );
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["related_questions"].as_array().unwrap().len(), 3);
    assert!(last["images"][0]["image_url"].is_string());
    let result = &last["search_results"][0];
    assert!(
        result["url"]
            .as_str()
            .unwrap()
            .starts_with("https://nasa.gov/")
    );
    assert!(
        result["snippet"]
            .as_str()
            .unwrap()
            .contains("search_recency_filter=\"week\"")
    );

    let mut body = sonar(true);
    body["model"] = "sonar-reasoning-pro".into();
    let (frames, _) = read_frames(post(&sim, "/v1/sonar", "key-a", body, false).await).await;
    let text = sonar_text(&json_events(&frames));
    let answer = sim.expected_answer("sonar-reasoning-pro", &[QUESTION]);
    assert_eq!(
        text,
        format!("<think>{}</think>\n\n{}", answer.reasoning, answer.text)
    );
    assert!(
        !json_events(&frames)[0]["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap()
            .contains("</think>")
    );

    sim.script(Target::Any, Fault::none().done_marker().legacy_object(), 1);
    let (frames, _) =
        read_frames(post(&sim, "/chat/completions", "key-a", sonar(true), false).await).await;
    let all = events(&frames);
    assert_eq!(all.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = all[..all.len() - 1]
        .iter()
        .map(|(_, data)| serde_json::from_str(data).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|chunk| chunk["object"] == "chat.completion")
    );
}

#[tokio::test]
async fn the_agent_api_names_its_events_and_numbers_them() {
    let sim = sim().await;
    for path in ["/v1/agent", "/v1/responses"] {
        let body = json!({"preset": "pro-search", "input": QUESTION, "stream": true});
        let (frames, _) = read_frames(post(&sim, path, "key-b", body, true).await).await;
        let events = events(&frames);
        let mut previous = 0;
        let mut text = String::new();
        for (name, data) in &events {
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(
                data["type"],
                name.as_str(),
                "the event line names the data's type"
            );
            let number = data["sequence_number"].as_u64().unwrap();
            assert!(number > previous);
            previous = number;
            if name == "response.output_text.delta" {
                text.push_str(data["delta"].as_str().unwrap());
            }
        }
        assert_eq!(events.first().unwrap().0, "response.created");
        assert_eq!(events.last().unwrap().0, "response.completed");
        assert!(
            events
                .iter()
                .any(|(name, _)| name == "response.reasoning.search_results")
        );
        assert_eq!(text, sim.expected_text("pro-search", &[QUESTION], None));
    }
    let body = json!({"model": "openai/gpt-5-mini", "input": QUESTION});
    let response = post(&sim, "/v1/agent", "key-b", body, false).await;
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["object"], "response");
    assert_eq!(body["output"][0]["type"], "search_results");
    assert_eq!(
        body["output"][1]["content"][0]["text"],
        sim.expected_text("openai/gpt-5-mini", &[QUESTION], None)
            .as_str()
    );
    assert!(body["usage"]["cost"]["total_cost"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn errors_look_like_the_real_service() {
    let sim = sim().await;
    let response = post(&sim, "/chat/completions", "wrong", sonar(false), false).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], "text/html");
    let page = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&page).contains("401 Authorization Required"));

    let mut body = sonar(false);
    body["model"] = "gpt-4".into();
    let response = post(&sim, "/chat/completions", "key-a", body, false).await;
    assert_eq!(response.status(), 400);
    let error: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(error["error"]["type"], "invalid_model");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid model 'gpt-4'.")
    );

    let response = post(
        &sim,
        "/chat/completions",
        "key-a",
        json!({"model": "sonar"}),
        false,
    )
    .await;
    assert_eq!(response.status(), 422);
    let error: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(error["detail"][0]["loc"].is_array());

    sim.script(Target::Key(0), Fault::rate_limited(1), 2);
    for _ in 0..2 {
        let response = post(&sim, "/chat/completions", "key-a", sonar(false), false).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "1");
    }
    let response = post(&sim, "/chat/completions", "key-b", sonar(false), false).await;
    assert_eq!(response.status(), 200, "key B was not scripted");
    let response = post(&sim, "/chat/completions", "key-a", sonar(false), false).await;
    assert_eq!(response.status(), 200, "key A works after its two 429s");
    let statuses: Vec<(Option<usize>, u16)> = sim
        .log()
        .iter()
        .map(|entry| (entry.key_index, entry.status))
        .collect();
    assert_eq!(
        statuses[3..],
        [
            (Some(0), 429),
            (Some(0), 429),
            (Some(1), 200),
            (Some(0), 200)
        ]
    );
}

#[tokio::test]
async fn stream_faults_break_the_stream_exactly_where_scripted() {
    let sim = sim().await;
    let whole = json_events(
        &read_frames(post(&sim, "/chat/completions", "key-a", sonar(true), false).await)
            .await
            .0,
    );

    sim.script(Target::Any, Fault::drop_after_events(3), 1);
    let (received, broken) =
        read_frames(post(&sim, "/chat/completions", "key-a", sonar(true), false).await).await;
    assert!(broken, "the connection drops");
    assert_eq!(json_events(&received), whole[..3]);

    sim.script(Target::Any, Fault::drop_mid_event(2), 1);
    let (received, broken) =
        read_frames(post(&sim, "/chat/completions", "key-a", sonar(true), false).await).await;
    assert!(broken);
    assert_eq!(
        json_events(&received),
        whole[..2],
        "the half event never completes"
    );
    assert!(
        received.concat().len()
            > events(&received)
                .iter()
                .map(|(_, data)| data.len())
                .sum::<usize>()
                + 2 * 8
    );

    sim.script(Target::Any, Fault::malformed_event(1), 1);
    let (received, _) =
        read_frames(post(&sim, "/chat/completions", "key-a", sonar(true), false).await).await;
    let datas = events(&received);
    assert!(serde_json::from_str::<Value>(&datas[1].1).is_err());
    assert_eq!(datas.len(), whole.len());

    sim.script(Target::Any, Fault::oversized_line(100_000), 1);
    let (received, _) =
        read_frames(post(&sim, "/chat/completions", "key-a", sonar(true), false).await).await;
    assert_eq!(events(&received)[0].1.len(), 100_000);

    sim.script(Target::Any, Fault::error_event_after(2), 1);
    let (received, broken) =
        read_frames(post(&sim, "/chat/completions", "key-a", sonar(true), false).await).await;
    let datas = events(&received);
    assert!(!broken);
    assert_eq!((datas.len(), datas[2].0.as_str()), (3, "error"));

    sim.script(Target::Any, Fault::stall_after_events(4), 1);
    let response = post(&sim, "/chat/completions", "key-a", sonar(true), false).await;
    let mut body = response.into_body();
    let mut seen = Vec::new();
    while events(&seen).len() < 4 {
        seen.extend(body.frame().await.unwrap().unwrap().into_data().ok());
    }
    drop(body);
    sim.wait_idle().await;
    let last = sim.log().pop().unwrap();
    assert_eq!((last.events_sent, last.ending), (4, Ending::Stalled));
    let endings: Vec<Ending> = sim.log().iter().map(|entry| entry.ending).collect();
    assert_eq!(
        endings,
        [
            Ending::Complete,
            Ending::Dropped,
            Ending::Dropped,
            Ending::Complete,
            Ending::Complete,
            Ending::ErrorEvent,
            Ending::Stalled
        ]
    );
}

#[tokio::test]
async fn framing_faults_keep_the_events_the_same() {
    let sim = sim().await;
    let whole = events(
        &read_frames(post(&sim, "/chat/completions", "key-a", sonar(true), false).await)
            .await
            .0,
    );
    for (ending, separator) in [(LineEnding::Crlf, "\r\n\r\n"), (LineEnding::Cr, "\r\r")] {
        sim.script(
            Target::Any,
            Fault::none().line_ending(ending).keep_alive(),
            1,
        );
        let (received, _) =
            read_frames(post(&sim, "/chat/completions", "key-a", sonar(true), false).await).await;
        let raw = String::from_utf8(received.concat()).unwrap();
        assert!(raw.contains(separator) && raw.contains(": keep-alive"));
        assert!(!raw.replace("\r", "").contains('\n') || ending == LineEnding::Crlf);
        assert_eq!(events(&received), whole);
    }
    sim.script(Target::Any, Fault::none().one_byte_pieces(), 1);
    let (received, _) =
        read_frames(post(&sim, "/chat/completions", "key-a", sonar(true), true).await).await;
    assert_eq!(events(&received), whole, "HTTP/2, one byte per write");
    assert!(
        received.len() > whole.len() * 10,
        "{} frames",
        received.len()
    );
}

#[tokio::test]
async fn search_and_health() {
    let sim = sim().await;
    let body = json!({"query": "olympus mons", "max_results": 2});
    let response = post(&sim, "/search", "key-a", body, false).await;
    let body: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["results"].as_array().unwrap().len(), 2);
    assert!(body["results"][0]["url"].is_string());
    let request = Request::get(format!("{}/health", sim.base_url()))
        .body(Full::default())
        .unwrap();
    assert_eq!(client(false).request(request).await.unwrap().status(), 200);
}

#[test]
fn a_scenario_file_scripts_keys_pace_and_faults() {
    let scenario = pplx_sim::Scenario::parse(
        r#"
        keys = ["a", "b"]
        [pace]
        first_byte_ms = 5
        chunk_chars = 3
        [[fault]]
        key = 0
        times = 2
        status = 429
        headers = [["retry-after", "1"]]
        [[fault]]
        drop_after_events = 5
        line_ending = "crlf"
        "#,
    )
    .unwrap();
    let config = scenario.into_config();
    assert_eq!(config.keys, ["a", "b"]);
    assert_eq!(config.pace.chunk_chars, 3);
    assert_eq!(config.faults.len(), 2);
    assert_eq!(
        config.faults[0],
        (Target::Key(0), Fault::rate_limited(1), 2)
    );
    assert_eq!(config.faults[1].0, Target::Any);
    assert!(pplx_sim::Scenario::parse("unknown = 1").is_err());
}

#[tokio::test]
async fn a_capped_log_keeps_the_latest_requests_only() {
    let mut config = SimConfig::default();
    config.pace = Pace::instant();
    config.log_capacity = Some(3);
    let sim = Simulator::start(config).await.unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for _ in 0..5 {
        let request = hyper::Request::post(format!("{}/search", sim.base_url()))
            .body(http_body_util::Full::new(bytes::Bytes::from(
                r#"{"query":"q"}"#,
            )))
            .unwrap();
        let response = client.request(request).await.unwrap();
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
    }
    sim.wait_idle().await;
    let sequences: Vec<usize> = sim.log().iter().map(|entry| entry.sequence).collect();
    assert_eq!(sequences, [2, 3, 4]);
    assert!(sim.log().iter().all(|entry| entry.status == 200));
}

/// Every body the simulator sends for `question` on each API (streamed and not): their sizes
/// in bytes, in the order Sonar stream, Sonar body, Agent stream, Agent body, Search.
async fn response_sizes(sim: &Simulator, question: &str, filters: &Value) -> Vec<usize> {
    let mut sonar_request =
        json!({"model": "sonar", "messages": [{"role": "user", "content": question}]});
    let mut agent_request = json!({"preset": "fast", "input": question});
    let mut search_request = json!({"query": question});
    for request in [&mut sonar_request, &mut search_request] {
        for (name, value) in filters.as_object().into_iter().flatten() {
            request[name] = value.clone();
        }
    }
    // The Agent API reads the filters inside its web_search tool (strict: not at the top).
    if filters
        .as_object()
        .is_some_and(|filters| !filters.is_empty())
    {
        agent_request["tools"] = json!([{"type": "web_search", "filters": filters}]);
    }
    let mut sizes = Vec::new();
    for (path, body) in [
        ("/chat/completions", sonar_request),
        ("/v1/agent", agent_request),
    ] {
        for stream in [true, false] {
            let mut body = body.clone();
            body["stream"] = stream.into();
            let response = post(sim, path, "key-a", body, false).await;
            assert_eq!(response.status(), 200, "{path}");
            let (frames, failed) = read_frames(response).await;
            assert!(!failed, "{path}");
            sizes.push(frames.iter().map(Bytes::len).sum());
        }
    }
    let response = post(sim, "/search", "key-a", search_request, false).await;
    assert_eq!(response.status(), 200);
    let (frames, _) = read_frames(response).await;
    sizes.push(frames.iter().map(Bytes::len).sum());
    sizes
}

/// A hostile question (one endless word, many long words, long filters) costs the simulator
/// about what an ordinary one does: its topic, answer and chunks are bounded, so neither its
/// work nor its memory grows with the question (a 2,000-character word used to make every
/// Sonar stream some megabytes long, a 10,000-character one some hundreds).
#[tokio::test]
async fn a_hostile_question_costs_what_an_ordinary_one_does() {
    let sim = sim().await;
    let ordinary = response_sizes(&sim, QUESTION, &json!({})).await;
    let long_word = "x".repeat(2_000);
    let huge_word = "y".repeat(1 << 20);
    let many_words = "abcdefghijklmnopqrstuvwxyz0123456789 ".repeat(20_000);
    let long_domain = format!("{}.example", "d".repeat(100_000));
    let filters = json!({
        "search_domain_filter": vec![long_domain; 30],
        "search_recency_filter": "w".repeat(100_000),
    });
    // A model name of a megabyte is refused, not repeated in every response object.
    let long_model = json!({"model": "m".repeat(1 << 20), "input": QUESTION, "stream": true});
    let response = post(&sim, "/v1/agent", "key-a", long_model, false).await;
    assert_eq!(response.status(), 400);
    let (frames, _) = read_frames(response).await;
    assert!(frames.iter().map(Bytes::len).sum::<usize>() < 1_000);
    for (name, question, filters) in [
        ("a 2,000-character word", long_word.as_str(), json!({})),
        ("a 1 MiB word", huge_word.as_str(), json!({})),
        ("740 KiB of long words", many_words.as_str(), json!({})),
        ("long filters", QUESTION, filters),
    ] {
        let hostile = response_sizes(&sim, question, &filters).await;
        for (index, (hostile, ordinary)) in hostile.iter().zip(&ordinary).enumerate() {
            assert!(
                *hostile <= ordinary * 4,
                "{name}: response {index} is {hostile} bytes, an ordinary one {ordinary}"
            );
        }
    }
}
