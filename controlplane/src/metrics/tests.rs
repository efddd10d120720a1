//! The text format and the gathering of per-core answers.

use gatehouse_engine::redeem::ChannelRedeemerStats;
use gatehouse_engine::{CoreStats, answer_pairs};

use super::*;

/// Every sample line: `name{labels} value`, with a `# TYPE` before it.
fn check_exposition(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(typed.insert(name.to_owned()), "{name} typed twice");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(typed.contains(family), "{name} has no # TYPE before it");
    }
}

fn pairs_with(accepted: u64) -> Vec<(CounterId, u64)> {
    let stats = CoreStats {
        accepted,
        bytes_up: 11,
        bytes_down: 22,
        ..CoreStats::total(&[])
    };
    answer_pairs(&stats, &ChannelRedeemerStats::default())
}

#[test]
fn label_values_escape_backslash_quote_and_newline() {
    assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
    assert_eq!(escape_label("x\ny"), "x\\ny");
}

#[test]
fn a_rendered_scrape_names_each_core_and_every_family_once() {
    let metrics = Metrics::default();
    metrics.login_outcome("password", "success");
    metrics.login_outcome("password", "success");
    metrics.login_outcome("totp", "bad \"code\"");
    metrics.redeem_outcome("socks", "ticket_unknown");
    let answers = vec![
        CoreAnswer {
            core: CoreId(0),
            pairs: Some(pairs_with(3)),
            depth_to_control: 1,
            depth_to_core: 0,
        },
        CoreAnswer {
            core: CoreId(1),
            pairs: None,
            depth_to_control: 0,
            depth_to_core: 0,
        },
    ];
    let text = metrics.render(&answers);
    check_exposition(&text);
    assert!(
        text.contains("gatehouse_core_accepts_total{core=\"0\"} 3\n"),
        "{text}"
    );
    assert!(text.contains("gatehouse_core_bytes_total{core=\"0\",direction=\"up\"} 11\n"));
    assert!(text.contains("gatehouse_core_bytes_total{core=\"0\",direction=\"down\"} 22\n"));
    assert!(text.contains("gatehouse_core_up{core=\"0\"} 1\n"));
    assert!(text.contains("gatehouse_core_up{core=\"1\"} 0\n"));
    assert!(
        !text.contains("gatehouse_core_accepts_total{core=\"1\"}"),
        "stale core: no sample"
    );
    assert!(text.contains("gatehouse_logins_total{factor=\"password\",outcome=\"success\"} 2\n"));
    assert!(text.contains(r#"gatehouse_logins_total{factor="totp",outcome="bad \"code\""} 1"#));
    assert!(text.contains(
        "gatehouse_ticket_redemptions_total{proto=\"socks\",outcome=\"ticket_unknown\"} 1\n"
    ));
    assert!(text.contains("# TYPE gatehouse_broker_decisions_total counter\n"));
    assert!(text.contains("gatehouse_channel_stats_rtt_seconds_bucket{le=\"+Inf\"} 0\n"));
}

#[test]
fn the_histogram_counts_each_observation_in_every_bucket_at_or_above_it() {
    let histogram = Histogram::default();
    histogram.observe(Duration::from_micros(700));
    histogram.observe(Duration::from_secs(1));
    let mut out = Exposition::default();
    histogram.render(&mut out, "rtt");
    assert!(
        out.text.contains("rtt_bucket{le=\"0.0005\"} 0\n"),
        "{}",
        out.text
    );
    assert!(out.text.contains("rtt_bucket{le=\"0.001\"} 1\n"));
    assert!(out.text.contains("rtt_bucket{le=\"0.25\"} 1\n"));
    assert!(out.text.contains("rtt_bucket{le=\"+Inf\"} 2\n"));
    assert!(out.text.contains("rtt_count 2\n"));
}

#[tokio::test]
async fn a_scrape_assembles_split_reports_and_marks_a_silent_core_stale() {
    let hub = StatsHub::default();
    let mut answering = hub.register(CoreId(0));
    let _silent = hub.register(CoreId(1));
    answering.record_depth(4, 2);
    let gather = hub.gather(Duration::from_millis(300));
    let answer = async {
        let (id, request) = answering.requests.recv().await.unwrap();
        assert_eq!(request, ToCore::StatsRequest);
        let pairs = pairs_with(5);
        assert!(pairs.len() > 20);
        for chunk in pairs.chunks(20) {
            hub.report(CoreId(0), id, &StatsReport::from_counters(chunk).unwrap());
        }
    };
    let (answers, ()) = tokio::join!(gather, answer);
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].pairs, Some(pairs_with(5)));
    assert_eq!(
        (answers[0].depth_to_control, answers[0].depth_to_core),
        (4, 2)
    );
    assert_eq!(answers[1].pairs, None, "core 1 never answered");
    assert_eq!(hub.rtt.count.load(Ordering::Relaxed), 1);
    assert!(hub.pending.lock().is_empty(), "nothing left behind");
}

#[test]
fn a_dropped_registration_leaves_the_hub() {
    let hub = StatsHub::default();
    let first = hub.register(CoreId(0));
    let second = hub.register(CoreId(0));
    drop(first);
    assert_eq!(hub.cores.lock().len(), 1, "a newer registration stays");
    drop(second);
    assert!(hub.cores.lock().is_empty());
}
