//! The method dispatcher: which handler owns a request that starts a server transaction. Only
//! this table decides; each handler lives in the module named for it (INVITE in `b2bua`, OPTIONS
//! in [`super::options`], REGISTER in [`super::access`] and the registrar).
//!
//! ACK and CANCEL never reach it: they belong to an existing INVITE transaction (RFC 3261 17.2.3,
//! 9.2) and the transaction layer matches them first.

use crate::sip::Method;

/// Who answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handler {
    /// A new call: the B2BUA's set-up (identify, route, admit, leg B).
    Call,
    /// Inside one of our dialogs (it has a To tag): the B2BUA relays or ends it.
    Dialog,
    /// Out-of-dialog OPTIONS: answered statelessly, no transaction kept (a flood of them costs
    /// no memory, and a spoofed source gets one response, not a retransmitted series).
    Options,
    /// A dialog-only method with no dialog (BYE, UPDATE, INFO, PRACK, NOTIFY): 481.
    NoDialog,
    /// REGISTER: digest, then the registrar.
    Register,
    /// Anything else (MESSAGE, SUBSCRIBE, extensions): 501.
    NotImplemented,
}

/// The handler for `method`, inside a dialog (`in_dialog`: the request has a To tag) or not.
pub(crate) fn handler_for(method: &Method, in_dialog: bool) -> Handler {
    if in_dialog {
        return Handler::Dialog;
    }
    match method {
        Method::Invite => Handler::Call,
        Method::Options => Handler::Options,
        Method::Register => Handler::Register,
        Method::Bye | Method::Update | Method::Info | Method::Prack | Method::Notify => {
            Handler::NoDialog
        }
        _ => Handler::NotImplemented,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_out_of_dialog_method_has_its_handler() {
        assert_eq!(handler_for(&Method::Invite, false), Handler::Call);
        assert_eq!(handler_for(&Method::Options, false), Handler::Options);
        assert_eq!(handler_for(&Method::Bye, false), Handler::NoDialog);
        assert_eq!(handler_for(&Method::Update, false), Handler::NoDialog);
        assert_eq!(handler_for(&Method::Register, false), Handler::Register);
    }

    #[test]
    fn a_to_tag_sends_any_method_to_its_dialog() {
        for m in [Method::Invite, Method::Options, Method::Bye, Method::Info] {
            assert_eq!(handler_for(&m, true), Handler::Dialog);
        }
    }
}
