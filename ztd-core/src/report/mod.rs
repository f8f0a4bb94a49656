//! Reports and printers: the envelope every tool's JSON object shares, and the printers that
//! turn a typed report into JSON, text lines, Nagios lines or the live view.

pub mod output;
