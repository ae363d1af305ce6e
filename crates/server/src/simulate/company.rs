//! The simulator's seeded generator, and the companies it simulates (a country, a numbering plan,
//! extensions and queues).

/// A small, fast, seedable generator (SplitMix64): the simulator needs repeatable variety, not
/// secrecy.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// Exponentially distributed with this mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    pub(super) fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + (self.next_u64() % 10) as u8)).collect()
    }
}

/// Where a company and its callers are.
#[derive(Debug, Clone, Copy)]
enum Country {
    France,
    UnitedKingdom,
    Germany,
    UnitedStates,
}

impl Country {
    const ALL: [Country; 4] =
        [Country::France, Country::UnitedKingdom, Country::Germany, Country::UnitedStates];

    /// A geographic (office) number: the area code and a subscriber part, full length.
    pub(super) fn landline(self, rng: &mut Rng) -> String {
        match self {
            Country::France => format!("+33{}{}", rng.range(1, 5), rng.digits(8)),
            Country::UnitedKingdom => format!("+4420{}", rng.digits(8)),
            Country::Germany => format!("+4930{}", rng.digits(8)),
            Country::UnitedStates => format!(
                "+1{}{}{}{}",
                rng.range(2, 9),
                rng.digits(2),
                rng.range(2, 9),
                rng.digits(6)
            ),
        }
    }

    /// A mobile number.
    pub(super) fn mobile(self, rng: &mut Rng) -> String {
        match self {
            Country::France => format!("+33{}{}", rng.range(6, 7), rng.digits(8)),
            Country::UnitedKingdom => format!("+447{}", rng.digits(9)),
            Country::Germany => format!("+4915{}{}", rng.range(1, 9), rng.digits(7)),
            Country::UnitedStates => Country::UnitedStates.landline(rng),
        }
    }
}

/// One simulated company (account): its main number and its dial chain's members' direct lines.
#[derive(Debug, Clone)]
pub struct Company {
    country: Country,
    pub main_number: String,
    pub members: Vec<String>,
}

impl Company {
    pub fn generate(rng: &mut Rng) -> Company {
        let country = *rng.pick(&Country::ALL);
        let main_number = country.landline(rng);
        // Direct lines share the main number's prefix, as a PBX's DID block does.
        let prefix = &main_number[..main_number.len() - 3];
        let first = rng.range(1, 900);
        let members = (0..rng.range(2, 5)).map(|i| format!("{prefix}{:03}", first + i)).collect();
        Company { country, main_number, members }
    }

    /// Someone outside the company: mostly a mobile of the same country, sometimes abroad.
    pub(super) fn outsider(&self, rng: &mut Rng) -> String {
        let country = if rng.chance(0.85) { self.country } else { *rng.pick(&Country::ALL) };
        if rng.chance(0.7) { country.mobile(rng) } else { country.landline(rng) }
    }
}
