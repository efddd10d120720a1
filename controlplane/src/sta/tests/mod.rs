//! Tests of the shared STA types, and helpers for the tests of the
//! submodules (`crate::sta::tests::seeded`, `sample_data`, ...).

use super::*;

/// A deterministic stand-in for the CSPRNG (splitmix64): tests are
/// reproducible, the logic under test is the same.
pub(crate) fn seeded(seed: u64) -> impl FnMut(&mut [u8]) + Send + 'static {
    let mut state = seed;
    move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

pub(crate) fn sta_id(text: &str) -> gatehouse_wire::ticket::StaId {
    text.parse().unwrap()
}

/// Ticket data with every field set, including characters XML must escape.
pub(crate) fn sample_data() -> TicketData {
    TicketData {
        ica_address: "10.0.0.5:1494".parse().unwrap(),
        cgp_address: Some(CgpAddress::decode("*:2598").unwrap()),
        xdata: Some(XData {
            server: Some("vda-01".to_owned()),
            user: Some("alice".to_owned()),
            domain: Some("CORP".to_owned()),
            app: Some("Notepad <x64> & \"friends\"".to_owned()),
            protocol: Some("ICA".to_owned()),
        }),
        values: BTreeMap::from([("SessionId".to_owned(), "s-42".to_owned())]),
    }
}

#[test]
fn parses_host_port_forms() {
    let addr = WorkerAddr::decode("vda-01.corp.example:1494").unwrap();
    assert_eq!(
        (addr.host.as_str(), addr.port),
        ("vda-01.corp.example", 1494)
    );
    let v6 = WorkerAddr::decode("[fe80::1]:2598").unwrap();
    assert_eq!(v6.host, "fe80::1");
    assert_eq!(v6.to_string(), "[fe80::1]:2598");
    assert_eq!(
        WorkerAddr::decode("10.0.0.5:1494").unwrap().to_string(),
        "10.0.0.5:1494"
    );
}

#[test]
fn rejects_bad_host_port_forms() {
    assert_eq!(WorkerAddr::decode("host"), Err(AddrError::MissingPort));
    assert_eq!(WorkerAddr::decode("host:0"), Err(AddrError::BadPort));
    assert_eq!(WorkerAddr::decode("host:+80"), Err(AddrError::BadPort));
    assert_eq!(WorkerAddr::decode("host:65536"), Err(AddrError::BadPort));
    assert_eq!(WorkerAddr::decode(":80"), Err(AddrError::BadHost));
    assert_eq!(WorkerAddr::decode("a b:80"), Err(AddrError::BadHost));
    assert_eq!(WorkerAddr::decode("fe80::1:80"), Err(AddrError::BadHost));
    assert_eq!(WorkerAddr::decode("[zz]:80"), Err(AddrError::BadHost));
    assert_eq!(WorkerAddr::decode("*:80"), Err(AddrError::BadHost));
    let long = format!("{}:80", "a".repeat(MAX_HOST_LEN + 1));
    assert_eq!(WorkerAddr::decode(&long), Err(AddrError::BadHost));
}

#[test]
fn cgp_address_star_takes_the_ica_host() {
    let data = sample_data();
    let target = data.cgp_target().unwrap();
    assert_eq!(target.to_string(), "10.0.0.5:2598");
    let explicit = TicketData {
        cgp_address: Some(CgpAddress::decode("10.0.0.9:2599").unwrap()),
        ..data
    };
    assert_eq!(explicit.cgp_target().unwrap().to_string(), "10.0.0.9:2599");
    assert_eq!(TicketData::new("h:1".parse().unwrap()).cgp_target(), None);
}

#[test]
fn ticket_data_bounds_are_enforced() {
    let mut data = sample_data();
    assert_eq!(data.check_bounds(), Ok(()));
    data.values
        .insert("Big".to_owned(), "x".repeat(MAX_TICKET_DATA_BYTES));
    assert!(matches!(
        data.check_bounds(),
        Err(StaError::DataTooLarge { .. })
    ));
    let mut many = TicketData::new("h:1".parse().unwrap());
    for i in 0..=MAX_EXTRA_VALUES {
        many.values.insert(format!("k{i}"), String::new());
    }
    assert!(many.check_bounds().is_err());
}

#[test]
fn client_errors_and_control_plane_errors_are_told_apart() {
    assert_eq!(StaError::Reused.fault(), Fault::Client);
    assert_eq!(StaError::WrongAuthority.fault(), Fault::Client);
    assert_eq!(StaError::Full.fault(), Fault::ControlPlane);
    assert_eq!(Fault::ControlPlane.as_str(), "control_plane");
}
