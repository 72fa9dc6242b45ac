//! AWS CloudTrail events: the template AWS needs and the SQS consumer. (Issue 14: to be built.)
