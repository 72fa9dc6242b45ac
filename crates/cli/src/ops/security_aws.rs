//! `coffer security aws-template`: prints what AWS needs to send the bucket's CloudTrail
//! events to Coffer's queue (rendered by `coffer_operations::security::cloudtrail`).

use crate::Global;
use anyhow::Result;
use clap::{Args, ValueEnum};
use coffer_operations::security::cloudtrail;

/// `coffer security aws-template`.
#[derive(Debug, Args)]
pub struct AwsTemplateArgs {
    /// The bucket to watch
    #[arg(long)]
    bucket: String,
    /// The SQS queue's name (also the EventBridge rule's)
    #[arg(long, default_value = cloudtrail::DEFAULT_QUEUE_NAME)]
    queue_name: String,
    /// `cloudformation`: one template (JSON) for `aws cloudformation deploy`; `json`: the
    /// rule's event pattern, the queue policy and the trail's event selectors, separately
    #[arg(long, value_enum, default_value_t = Format::Cloudformation)]
    format: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Cloudformation,
    Json,
}

/// Runs it.
///
/// # Errors
/// A bucket or queue name that AWS would refuse.
pub fn run(_global: &Global, args: &AwsTemplateArgs) -> Result<()> {
    let opts = cloudtrail::TemplateOptions::new(&args.bucket, &args.queue_name)?;
    let doc = match args.format {
        Format::Cloudformation => cloudtrail::cloudformation(&opts),
        Format::Json => cloudtrail::documents(&opts),
    };
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}
