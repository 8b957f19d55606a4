use super::*;

/// [`SplitMix`] so the statistical tests are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut g = SplitMix(self.0);
        let v = g.next_u64();
        self.0 = g.0;
        v
    }
    fn key(&mut self) -> FlowKey {
        let mut k = FlowKey::v6([0; 16], [0; 16], 0, 0, 6);
        k.src[..8].copy_from_slice(&self.next().to_le_bytes());
        k.src[8..].copy_from_slice(&self.next().to_le_bytes());
        k.dst[..8].copy_from_slice(&self.next().to_le_bytes());
        k.dst[8..].copy_from_slice(&self.next().to_le_bytes());
        let r = self.next();
        k.sport = r as u16;
        k.dport = (r >> 16) as u16;
        k.proto = (r >> 32) as u8;
        k.family = (r >> 40) as u8;
        k
    }
}

/// The key's 38 bytes of fields in a fixed order, to flip bits by position.
fn key_bytes(k: &FlowKey) -> [u8; 38] {
    let mut b = [0u8; 38];
    b[..16].copy_from_slice(&k.src);
    b[16..32].copy_from_slice(&k.dst);
    b[32..34].copy_from_slice(&k.sport.to_le_bytes());
    b[34..36].copy_from_slice(&k.dport.to_le_bytes());
    b[36] = k.proto;
    b[37] = k.family;
    b
}

fn key_from(b: &[u8; 38]) -> FlowKey {
    FlowKey {
        src: b[..16].try_into().unwrap(),
        dst: b[16..32].try_into().unwrap(),
        sport: u16::from_le_bytes([b[32], b[33]]),
        dport: u16::from_le_bytes([b[34], b[35]]),
        proto: b[36],
        family: b[37],
    }
}

/// Flips every input bit of `n` random inputs; returns, per input bit, the mean number of
/// output bits flipped, and the worst per-(input bit, output bit) flip probability
/// distance from 1/2 (the strict avalanche criterion).
fn avalanche<const N: usize>(
    n: usize,
    rng: &mut Rng,
    mut input: impl FnMut(&mut Rng) -> [u8; N],
    f: impl Fn(&[u8; N]) -> u64,
) -> (Vec<f64>, f64) {
    let bits = N * 8;
    let mut flips = vec![[0u32; 64]; bits];
    let mut total = vec![0u64; bits];
    for _ in 0..n {
        let x = input(rng);
        let h = f(&x);
        for bit in 0..bits {
            let mut y = x;
            y[bit / 8] ^= 1 << (bit % 8);
            let d = h ^ f(&y);
            total[bit] += u64::from(d.count_ones());
            for (o, c) in flips[bit].iter_mut().enumerate() {
                *c += ((d >> o) & 1) as u32;
            }
        }
    }
    let means: Vec<f64> = total.iter().map(|&t| t as f64 / n as f64).collect();
    let worst = flips
        .iter()
        .flat_map(|row| row.iter())
        .map(|&c| (c as f64 / n as f64 - 0.5).abs())
        .fold(0.0, f64::max);
    (means, worst)
}

fn check_avalanche(what: &str, means: &[f64], worst: f64) {
    let lo = means.iter().cloned().fold(f64::MAX, f64::min);
    let hi = means.iter().cloned().fold(0.0, f64::max);
    println!(
        "{what}: mean output bits flipped per input bit in [{lo:.2}, {hi:.2}], worst SAC bias {worst:.3}"
    );
    // 64 output bits, ideal 32; with 4000 samples the standard error of a mean is ~0.06,
    // so +-1 is a real defect, not noise. The SAC bias has a standard error of ~0.008 and
    // there are thousands of cells, so 0.05 is ~6 sigma.
    assert!(
        lo > 31.0 && hi < 33.0,
        "{what}: avalanche out of [31, 33]: [{lo}, {hi}]"
    );
    assert!(worst < 0.05, "{what}: strict avalanche bias {worst}");
}

#[test]
fn flow_hash_avalanche() {
    let mut rng = Rng(1);
    let (means, worst) = avalanche(
        4000,
        &mut rng,
        |r| key_bytes(&r.key()),
        |b| flow_hash(0x1234, &key_from(b)),
    );
    check_avalanche("flow_hash", &means, worst);
    // IPv4 keys are mostly zero bytes: check they avalanche as well.
    let (means, worst) = avalanche(
        4000,
        &mut rng,
        |r| {
            let x = r.next();
            let y = r.next();
            key_bytes(&FlowKey::v4(
                (x as u32).to_be_bytes(),
                ((x >> 32) as u32).to_be_bytes(),
                y as u16,
                (y >> 16) as u16,
                6,
            ))
        },
        |b| flow_hash(7, &key_from(b)),
    );
    check_avalanche("flow_hash (IPv4 keys)", &means, worst);
}

#[test]
fn owner_and_src_hash_avalanche() {
    let mut rng = Rng(2);
    let input = |r: &mut Rng| {
        let mut b = [0u8; 18];
        b[..8].copy_from_slice(&r.next().to_le_bytes());
        b[8..16].copy_from_slice(&r.next().to_le_bytes());
        b[16..].copy_from_slice(&(r.next() as u16).to_le_bytes());
        b
    };
    let (means, worst) = avalanche(4000, &mut rng, input, |b| {
        owner_hash(
            99,
            b[..16].try_into().unwrap(),
            u16::from_le_bytes([b[16], b[17]]),
        )
    });
    check_avalanche("owner_hash", &means, worst);
    let (means, worst) = avalanche(
        4000,
        &mut rng,
        |r| input(r)[..16].try_into().unwrap(),
        |b: &[u8; 16]| src_hash(99, b),
    );
    check_avalanche("src_hash", &means, worst);
}

#[test]
fn hash_bytes_avalanche() {
    let mut rng = Rng(3);
    // 21 bytes: one full chunk and a tail, like a typical backend name.
    let (means, worst) = avalanche(
        4000,
        &mut rng,
        |r| {
            let mut b = [0u8; 21];
            for c in b.chunks_mut(8) {
                let w = r.next().to_le_bytes();
                c.copy_from_slice(&w[..c.len()]);
            }
            b
        },
        |b| hash_bytes(5, b),
    );
    check_avalanche("hash_bytes", &means, worst);
}

/// Counts of `h % m` over sequential, realistic keys (consecutive addresses of one client
/// range, consecutive ephemeral ports: the least random input a balancer sees) must pass
/// a chi-square test.
#[test]
fn low_bits_uniform() {
    let n = 200_000u32;
    fn addr(i: u32) -> [u8; 16] {
        let b = i.to_be_bytes();
        FlowKey::v4([10, b[1], b[2], b[3]], [0; 4], 0, 0, 0).src
    }
    // 782 clients x 256 consecutive source ports to one VIP:443.
    fn ports(i: u32) -> u64 {
        let k = FlowKey::v4(
            [10, 0, (i >> 16) as u8, (i >> 8) as u8],
            [192, 0, 2, 1],
            32768 + (i & 0xff) as u16,
            443,
            6,
        );
        flow_hash(42, &k)
    }
    // Consecutive clients, one port each.
    fn addrs(i: u32) -> u64 {
        flow_hash(
            42,
            &FlowKey {
                src: addr(i),
                ..FlowKey::v4([0; 4], [192, 0, 2, 1], 40000, 443, 6)
            },
        )
    }
    type Case = (&'static str, fn(u32) -> u64);
    let hashes: [Case; 4] = [
        ("flow_hash ports", ports),
        ("flow_hash addrs", addrs),
        ("src_hash", |i| src_hash(42, &addr(i))),
        ("owner_hash", |i| owner_hash(42, &addr(i >> 16), i as u16)),
    ];
    for (name, f) in &hashes {
        let hs: Vec<u64> = (0..n).map(*f).collect();
        for m in [2u64, 3, 7, 16, 64, 1021, 1024, 65537] {
            let mut counts = vec![0u64; m as usize];
            for h in &hs {
                counts[(h % m) as usize] += 1;
            }
            let expect = f64::from(n) / m as f64;
            let chi2: f64 = counts
                .iter()
                .map(|&c| (c as f64 - expect).powi(2) / expect)
                .sum();
            // chi-square with m-1 degrees of freedom: mean m-1, sd sqrt(2(m-1)); allow 5 sd.
            let df = (m - 1) as f64;
            let bound = df + 5.0 * (2.0 * df).sqrt() + 5.0;
            assert!(chi2 < bound, "{name} % {m}: chi2 {chi2:.1} >= {bound:.1}");
        }
    }
}

/// The flow table's hash (not frozen) spreads sequential IPv4 flows evenly over buckets
/// (its low 32 bits) and over tags (its top 15), and every field matters.
#[test]
fn table_hash_spreads() {
    let n = 200_000u32;
    for (name, f) in [
        (
            "ports",
            (|i: u32| {
                FlowKey::v4(
                    [10, 0, 0, (i >> 16) as u8],
                    [192, 0, 2, 1],
                    i as u16,
                    443,
                    6,
                )
            }) as fn(u32) -> FlowKey,
        ),
        ("addrs", |i| {
            FlowKey::v4(i.to_be_bytes(), [192, 0, 2, 1], 40000, 443, 6)
        }),
    ] {
        let hs: Vec<u64> = (0..n).map(|i| table_hash(9, &f(i))).collect();
        for (what, m, pick) in [
            (
                "bucket",
                65521u64,
                (|h: u64| ((h & 0xffff_ffff) * 65521) >> 32) as fn(u64) -> u64,
            ),
            ("tag", 32768, |h| (h >> 48) & 0x7fff),
        ] {
            let mut counts = vec![0u64; m as usize];
            for &h in &hs {
                counts[pick(h) as usize] += 1;
            }
            let expect = f64::from(n) / m as f64;
            let chi2: f64 = counts
                .iter()
                .map(|&c| (c as f64 - expect).powi(2) / expect)
                .sum();
            let df = (m - 1) as f64;
            assert!(
                chi2 < df + 5.0 * (2.0 * df).sqrt(),
                "{name} {what}: chi2 {chi2:.0}"
            );
        }
    }
    let k = FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 1], 40000, 80, 6);
    let h = table_hash(1, &k);
    assert_ne!(h, table_hash(2, &k));
    assert_ne!(h, table_hash(1, &k.reversed()));
    assert_ne!(h, table_hash(1, &FlowKey { proto: 17, ..k }));
    let mut k6 = k;
    k6.family = 6;
    assert_eq!(table_hash(1, &k6), flow_hash(1, &k6));
}

#[test]
fn seed_and_fields_matter() {
    let k = FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 1], 40000, 80, 6);
    assert_ne!(flow_hash(1, &k), flow_hash(2, &k));
    assert_ne!(flow_hash(1, &k), flow_hash(1, &k.reversed()));
    // IPv4 a.b.c.d and IPv6 a.b.c.d:: share address bytes but not the family.
    let mut k6 = k;
    k6.family = 6;
    assert_ne!(flow_hash(1, &k), flow_hash(1, &k6));
    assert_ne!(src_hash(1, &k.src), owner_hash(1, &k.src, 0));
    assert_ne!(hash_bytes(0, b"ab"), hash_bytes(0, b"ab\0"));
    assert_ne!(hash_bytes(0, b""), hash_bytes(1, b""));
}

/// FROZEN. These numbers are what every deployed Fulcrum computes. If this test fails,
/// the change moves every live flow to another backend (or worker) on upgrade, and two
/// instances of different versions behind one ECMP group would disagree on every flow.
/// Do not update the values; revert the change to the hash instead.
#[test]
fn golden_values() {
    let v4 = FlowKey::v4([10, 0, 0, 1], [192, 0, 2, 10], 40000, 443, 6);
    let v6 = FlowKey::v6(
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80,
        ],
        51000,
        53,
        17,
    );
    let got = [
        hash_bytes(0, b""),
        hash_bytes(0, b"web-1"),
        hash_bytes(0x5eed, b"web-1"),
        hash_bytes(0x5eed, b"a-backend-name-longer-than-16-bytes"),
        flow_hash(0, &v4),
        flow_hash(0x5eed, &v4),
        flow_hash(0x5eed, &v6),
        flow_hash(0x5eed, &v4.reversed()),
        src_hash(0x5eed, &v4.src),
        src_hash(0x5eed, &v6.src),
        owner_hash(0x5eed, &v4.src, v4.sport),
        owner_hash(0x5eed, &v6.src, v6.sport),
    ];
    let want: [u64; 12] = [
        0x38020ae3f6b90077,
        0x16c53ea4e828246b,
        0xe5f351b04d269696,
        0xb438d6a36ea59335,
        0x4e066993da6cc0c6,
        0xc0c454cc2b58261a,
        0xdc87fd352c19f2c9,
        0xd7bff43a6eb3d58b,
        0xe2aad71aa73830f5,
        0x22384295ded02f05,
        0xd91315ef5457a82f,
        0x17a42c48d322ec55,
    ];
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g, w,
            "golden value {i} changed: {g:#018x}, frozen {w:#018x}"
        );
    }
}
