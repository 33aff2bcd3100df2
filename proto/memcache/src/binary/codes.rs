//! Opcodes and statuses of the binary protocol.

use std::fmt;

/// A command code. A newtype rather than an enum: servers must echo codes they do not know
/// (memcached answers "Unknown command" with the request's opcode), and clients may meet codes
/// from newer servers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opcode(pub u8);

impl Opcode {
    pub const GET: Opcode = Opcode(0x00);
    pub const SET: Opcode = Opcode(0x01);
    pub const ADD: Opcode = Opcode(0x02);
    pub const REPLACE: Opcode = Opcode(0x03);
    pub const DELETE: Opcode = Opcode(0x04);
    pub const INCREMENT: Opcode = Opcode(0x05);
    pub const DECREMENT: Opcode = Opcode(0x06);
    pub const QUIT: Opcode = Opcode(0x07);
    pub const FLUSH: Opcode = Opcode(0x08);
    pub const GETQ: Opcode = Opcode(0x09);
    pub const NOOP: Opcode = Opcode(0x0a);
    pub const VERSION: Opcode = Opcode(0x0b);
    pub const GETK: Opcode = Opcode(0x0c);
    pub const GETKQ: Opcode = Opcode(0x0d);
    pub const APPEND: Opcode = Opcode(0x0e);
    pub const PREPEND: Opcode = Opcode(0x0f);
    pub const STAT: Opcode = Opcode(0x10);
    pub const SETQ: Opcode = Opcode(0x11);
    pub const ADDQ: Opcode = Opcode(0x12);
    pub const REPLACEQ: Opcode = Opcode(0x13);
    pub const DELETEQ: Opcode = Opcode(0x14);
    pub const INCREMENTQ: Opcode = Opcode(0x15);
    pub const DECREMENTQ: Opcode = Opcode(0x16);
    pub const QUITQ: Opcode = Opcode(0x17);
    pub const FLUSHQ: Opcode = Opcode(0x18);
    pub const APPENDQ: Opcode = Opcode(0x19);
    pub const PREPENDQ: Opcode = Opcode(0x1a);
    pub const VERBOSITY: Opcode = Opcode(0x1b);
    pub const TOUCH: Opcode = Opcode(0x1c);
    pub const GAT: Opcode = Opcode(0x1d);
    pub const GATQ: Opcode = Opcode(0x1e);
    pub const SASL_LIST_MECHS: Opcode = Opcode(0x20);
    pub const SASL_AUTH: Opcode = Opcode(0x21);
    pub const SASL_STEP: Opcode = Opcode(0x22);
    pub const GATK: Opcode = Opcode(0x23);
    pub const GATKQ: Opcode = Opcode(0x24);

    /// (quiet, loud) pairs: a quiet command is its loud twin that sends no reply on success
    /// (and, for the reads, none on a miss either).
    const QUIET_PAIRS: [(Opcode, Opcode); 14] = [
        (Opcode::GETQ, Opcode::GET),
        (Opcode::GETKQ, Opcode::GETK),
        (Opcode::SETQ, Opcode::SET),
        (Opcode::ADDQ, Opcode::ADD),
        (Opcode::REPLACEQ, Opcode::REPLACE),
        (Opcode::DELETEQ, Opcode::DELETE),
        (Opcode::INCREMENTQ, Opcode::INCREMENT),
        (Opcode::DECREMENTQ, Opcode::DECREMENT),
        (Opcode::QUITQ, Opcode::QUIT),
        (Opcode::FLUSHQ, Opcode::FLUSH),
        (Opcode::APPENDQ, Opcode::APPEND),
        (Opcode::PREPENDQ, Opcode::PREPEND),
        (Opcode::GATQ, Opcode::GAT),
        (Opcode::GATKQ, Opcode::GATK),
    ];

    /// Whether this is a quiet variant.
    pub fn is_quiet(self) -> bool {
        Self::QUIET_PAIRS.iter().any(|&(q, _)| q == self)
    }

    /// The loud twin of a quiet opcode; any other opcode is returned unchanged.
    pub fn loud(self) -> Opcode {
        Self::QUIET_PAIRS
            .iter()
            .find(|&&(q, _)| q == self)
            .map_or(self, |&(_, l)| l)
    }

    /// The quiet twin of an opcode, if it has one (a quiet opcode is its own twin).
    pub fn quiet(self) -> Option<Opcode> {
        Self::QUIET_PAIRS
            .iter()
            .find(|&&(q, l)| l == self || q == self)
            .map(|&(q, _)| q)
    }

    /// memcached's name for the opcode, if it is one memcached knows.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Opcode::GET => "GET",
            Opcode::SET => "SET",
            Opcode::ADD => "ADD",
            Opcode::REPLACE => "REPLACE",
            Opcode::DELETE => "DELETE",
            Opcode::INCREMENT => "INCREMENT",
            Opcode::DECREMENT => "DECREMENT",
            Opcode::QUIT => "QUIT",
            Opcode::FLUSH => "FLUSH",
            Opcode::GETQ => "GETQ",
            Opcode::NOOP => "NOOP",
            Opcode::VERSION => "VERSION",
            Opcode::GETK => "GETK",
            Opcode::GETKQ => "GETKQ",
            Opcode::APPEND => "APPEND",
            Opcode::PREPEND => "PREPEND",
            Opcode::STAT => "STAT",
            Opcode::SETQ => "SETQ",
            Opcode::ADDQ => "ADDQ",
            Opcode::REPLACEQ => "REPLACEQ",
            Opcode::DELETEQ => "DELETEQ",
            Opcode::INCREMENTQ => "INCREMENTQ",
            Opcode::DECREMENTQ => "DECREMENTQ",
            Opcode::QUITQ => "QUITQ",
            Opcode::FLUSHQ => "FLUSHQ",
            Opcode::APPENDQ => "APPENDQ",
            Opcode::PREPENDQ => "PREPENDQ",
            Opcode::VERBOSITY => "VERBOSITY",
            Opcode::TOUCH => "TOUCH",
            Opcode::GAT => "GAT",
            Opcode::GATQ => "GATQ",
            Opcode::SASL_LIST_MECHS => "SASL_LIST_MECHS",
            Opcode::SASL_AUTH => "SASL_AUTH",
            Opcode::SASL_STEP => "SASL_STEP",
            Opcode::GATK => "GATK",
            Opcode::GATKQ => "GATKQ",
            _ => return None,
        })
    }
}

impl fmt::Debug for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Opcode({:#04x})", self.0),
        }
    }
}

/// A response status. A newtype for the same reason as [`Opcode`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u16);

impl Status {
    pub const SUCCESS: Status = Status(0x0000);
    pub const KEY_ENOENT: Status = Status(0x0001);
    pub const KEY_EEXISTS: Status = Status(0x0002);
    pub const E2BIG: Status = Status(0x0003);
    pub const EINVAL: Status = Status(0x0004);
    pub const NOT_STORED: Status = Status(0x0005);
    pub const DELTA_BADVAL: Status = Status(0x0006);
    pub const NOT_MY_VBUCKET: Status = Status(0x0007);
    pub const AUTH_ERROR: Status = Status(0x0020);
    pub const AUTH_CONTINUE: Status = Status(0x0021);
    pub const UNKNOWN_COMMAND: Status = Status(0x0081);
    pub const ENOMEM: Status = Status(0x0082);
    pub const NOT_SUPPORTED: Status = Status(0x0083);
    pub const EINTERNAL: Status = Status(0x0084);
    pub const EBUSY: Status = Status(0x0085);
    pub const ETMPFAIL: Status = Status(0x0086);

    /// The body memcached 1.6 sends with this error status (checked against memcached 1.6.18),
    /// or None for statuses it never sends with a message.
    pub fn message(self) -> Option<&'static str> {
        Some(match self {
            Status::KEY_ENOENT => "Not found",
            Status::KEY_EEXISTS => "Data exists for key.",
            Status::E2BIG => "Too large.",
            Status::EINVAL => "Invalid arguments",
            Status::NOT_STORED => "Not stored.",
            Status::DELTA_BADVAL => "Non-numeric server-side value for incr or decr",
            Status::AUTH_ERROR => "Auth failure.",
            Status::UNKNOWN_COMMAND => "Unknown command",
            Status::ENOMEM => "Out of memory",
            _ => return None,
        })
    }

    fn name(self) -> Option<&'static str> {
        Some(match self {
            Status::SUCCESS => "SUCCESS",
            Status::KEY_ENOENT => "KEY_ENOENT",
            Status::KEY_EEXISTS => "KEY_EEXISTS",
            Status::E2BIG => "E2BIG",
            Status::EINVAL => "EINVAL",
            Status::NOT_STORED => "NOT_STORED",
            Status::DELTA_BADVAL => "DELTA_BADVAL",
            Status::NOT_MY_VBUCKET => "NOT_MY_VBUCKET",
            Status::AUTH_ERROR => "AUTH_ERROR",
            Status::AUTH_CONTINUE => "AUTH_CONTINUE",
            Status::UNKNOWN_COMMAND => "UNKNOWN_COMMAND",
            Status::ENOMEM => "ENOMEM",
            Status::NOT_SUPPORTED => "NOT_SUPPORTED",
            Status::EINTERNAL => "EINTERNAL",
            Status::EBUSY => "EBUSY",
            Status::ETMPFAIL => "ETMPFAIL",
            _ => return None,
        })
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Status({:#06x})", self.0),
        }
    }
}
