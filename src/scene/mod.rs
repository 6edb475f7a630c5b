//! The scene file: settings (pytti's names), prompt grammar and expressions.
