//! `coffer completions SHELL` and `coffer man`: generated from the CLI definition.
