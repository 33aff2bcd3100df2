//! The words both sides of the meta protocol share: command names, the `M` mode bytes of `ms`
//! and `ma`, and reply codes.

/// A meta command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `mg`
    Get,
    /// `ms`
    Set,
    /// `md`
    Delete,
    /// `ma`
    Arith,
    /// `mn`
    Noop,
    /// `me`
    Debug,
}

impl Command {
    pub fn from_name(name: &[u8]) -> Option<Command> {
        Some(match name {
            b"mg" => Command::Get,
            b"ms" => Command::Set,
            b"md" => Command::Delete,
            b"ma" => Command::Arith,
            b"mn" => Command::Noop,
            b"me" => Command::Debug,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Command::Get => "mg",
            Command::Set => "ms",
            Command::Delete => "md",
            Command::Arith => "ma",
            Command::Noop => "mn",
            Command::Debug => "me",
        }
    }
}

/// `ms` modes (`M` flag). memcached takes these upper-case letters only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetMode {
    /// `MS`, the default.
    #[default]
    Set,
    /// `ME`
    Add,
    /// `MR`
    Replace,
    /// `MA`
    Append,
    /// `MP`
    Prepend,
}

impl SetMode {
    pub fn from_byte(b: u8) -> Option<SetMode> {
        Some(match b {
            b'S' => SetMode::Set,
            b'E' => SetMode::Add,
            b'R' => SetMode::Replace,
            b'A' => SetMode::Append,
            b'P' => SetMode::Prepend,
            _ => return None,
        })
    }

    pub fn byte(self) -> u8 {
        match self {
            SetMode::Set => b'S',
            SetMode::Add => b'E',
            SetMode::Replace => b'R',
            SetMode::Append => b'A',
            SetMode::Prepend => b'P',
        }
    }
}

/// `ma` modes (`M` flag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArithMode {
    /// `MI` or `M+`, the default.
    #[default]
    Incr,
    /// `MD` or `M-`
    Decr,
}

impl ArithMode {
    pub fn from_byte(b: u8) -> Option<ArithMode> {
        match b {
            b'I' | b'+' => Some(ArithMode::Incr),
            b'D' | b'-' => Some(ArithMode::Decr),
            _ => None,
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            ArithMode::Incr => b'I',
            ArithMode::Decr => b'D',
        }
    }
}

/// Reply codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// A value follows.
    Va,
    /// Success without a value.
    Hd,
    /// `mg` miss.
    En,
    Nf,
    Ns,
    Ex,
    Mn,
    Me,
}

impl Code {
    pub fn as_bytes(self) -> &'static [u8; 2] {
        match self {
            Code::Va => b"VA",
            Code::Hd => b"HD",
            Code::En => b"EN",
            Code::Nf => b"NF",
            Code::Ns => b"NS",
            Code::Ex => b"EX",
            Code::Mn => b"MN",
            Code::Me => b"ME",
        }
    }

    pub fn from_bytes(b: &[u8]) -> Option<Code> {
        Some(match b {
            b"VA" => Code::Va,
            b"HD" => Code::Hd,
            b"EN" => Code::En,
            b"NF" => Code::Nf,
            b"NS" => Code::Ns,
            b"EX" => Code::Ex,
            b"MN" => Code::Mn,
            b"ME" => Code::Me,
            _ => return None,
        })
    }
}
