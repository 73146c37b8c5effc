//! Lines typed while an answer streams in the interactive session: kept out of the answer
//! (the terminal does not echo them meanwhile) and asked in turn afterwards, instead of being
//! echoed into the answer and all but the first lost to the line editor.

use std::collections::VecDeque;

/// The terminal's echo, off until this is dropped (then as it was). Nothing on a stdin that is
/// not a terminal, or off Unix.
pub(crate) struct EchoOff {
    #[cfg(unix)]
    saved: Option<nix::sys::termios::Termios>,
}

impl EchoOff {
    pub(crate) fn new() -> EchoOff {
        #[cfg(unix)]
        {
            use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
            let stdin = std::io::stdin();
            let saved = tcgetattr(&stdin).ok();
            if let Some(saved) = &saved {
                let mut quiet = saved.clone();
                quiet.local_flags.remove(LocalFlags::ECHO);
                let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
            }
            EchoOff { saved }
        }
        #[cfg(not(unix))]
        EchoOff {}
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// The whole lines typed and not yet read, without waiting for more (the terminal hands over
/// whole lines only; a line still being typed stays for the line editor). Blank ones are
/// left out.
pub(crate) fn pending_lines() -> VecDeque<String> {
    let mut lines = VecDeque::new();
    #[cfg(unix)]
    {
        use std::io::Read;
        use std::os::fd::AsFd;

        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let stdin = std::io::stdin();
        // Larger than the standard input's buffer, so each read goes to the terminal itself.
        let mut buffer = vec![0; 16 << 10];
        let mut text = String::new();
        // Bounded: at most 64 lines are taken at once.
        for _ in 0..64 {
            let mut ready = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
            if !matches!(poll(&mut ready, PollTimeout::ZERO), Ok(1)) {
                break;
            }
            match stdin.lock().read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => text.push_str(&String::from_utf8_lossy(&buffer[..read])),
            }
        }
        lines.extend(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned),
        );
    }
    lines
}
