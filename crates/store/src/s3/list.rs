//! Listing: `ListObjectVersions` pages merged into the contract's order, the store's own
//! listing tokens, and the raw-XML reading that recovers the server's interleaving of
//! versions and delete markers.
//!
//! Invariant guarded here: a page continues after the key it ended at even if that key
//! changed meanwhile; a token the store did not issue is `InvalidRequest`.

use super::*;

/// How many `HeadObject` requests one listing page has in flight at most.
pub const HEAD_CONCURRENCY: usize = 16;

/// The most items one listing page holds, whatever `limit` asks (S3's `max-keys` cap).
pub const MAX_PAGE_LIMIT: usize = 1000;

/// One entry of a version listing.
#[derive(Clone, Debug)]
pub(super) struct Listed {
    pub(super) full_key: String,
    pub(super) version: String,
    pub(super) is_latest: bool,
    pub(super) delete_marker: bool,
    pub(super) created: Timestamp,
    pub(super) size: u64,
}

impl Listed {
    pub(super) fn marker_meta(&self, key: String) -> ObjectVersion {
        ObjectVersion {
            key,
            version: VersionId(self.version.clone()),
            created: self.created,
            is_latest: self.is_latest,
            delete_marker: true,
            size: 0,
            checksum: String::new(),
            retention: None,
            legal_hold: false,
        }
    }
}

pub(super) fn decode_list_token(t: &str) -> Result<String> {
    hex::decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| StoreError::invalid(format!("malformed list token {t:?}")))
}

pub(super) fn decode_versions_token(t: &str) -> Result<(String, String)> {
    let bad = || StoreError::invalid(format!("malformed version list token {t:?}"));
    let (k, v) = t.split_once('.').ok_or_else(bad)?;
    Ok((decode_list_token(k).map_err(|_| bad())?, v.to_owned()))
}

/// Keeps the raw body of a (buffered) reply, to read what the SDK's model loses.
#[derive(Clone, Debug, Default)]
pub(super) struct BodyTap(Arc<std::sync::Mutex<Option<Vec<u8>>>>);

impl BodyTap {
    pub(super) fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

impl aws_sdk_s3::config::Intercept for BodyTap {
    fn name(&self) -> &'static str {
        "coffer-body-tap"
    }

    fn read_after_deserialization(
        &self,
        context: &aws_sdk_s3::config::interceptors::AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), aws_sdk_s3::error::BoxError> {
        if let Some(b) = context.response().body().bytes() {
            *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(b.to_vec());
        }
        Ok(())
    }
}

/// The position of each `(key, version id)` among the `<Version>` and `<DeleteMarker>`
/// elements of a `ListObjectVersions` reply.
///
/// Linear in the reply: the next `<Version>` and the next `<DeleteMarker>` are each searched
/// for only once they have been passed. (Searching both from every element made a page of
/// 1 000 versions with no delete marker scan ~250 MB: a third of a backup's CPU at 1 000
/// snapshots.)
pub(super) fn xml_order(body: &[u8]) -> std::collections::HashMap<(String, String), usize> {
    const VERSION: &str = "<Version>";
    const MARKER: &str = "<DeleteMarker>";
    let text = String::from_utf8_lossy(body);
    let text: &str = &text;
    let mut out = std::collections::HashMap::new();
    let find = |tag: &str, from: usize| text.get(from..).and_then(|t| t.find(tag)).map(|i| from + i);
    let (mut next_v, mut next_m) = (find(VERSION, 0), find(MARKER, 0));
    let mut n = 0;
    loop {
        let (start, close) = match (next_v, next_m) {
            (Some(a), Some(b)) if a < b => (a, "</Version>"),
            (Some(a), None) => (a, "</Version>"),
            (_, Some(b)) => (b, "</DeleteMarker>"),
            (None, None) => break,
        };
        let Some(len) = text[start..].find(close) else { break };
        let elem = &text[start..start + len];
        if let (Some(k), Some(id)) = (xml_text(elem, "Key"), xml_text(elem, "VersionId")) {
            out.insert((k, id), n);
            n += 1;
        }
        let end = start + len + close.len();
        if next_v.is_some_and(|p| p < end) {
            next_v = find(VERSION, end);
        }
        if next_m.is_some_and(|p| p < end) {
            next_m = find(MARKER, end);
        }
    }
    out
}

/// The unescaped text of the first `<tag>…</tag>` in `elem`.
pub(super) fn xml_text(elem: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = elem.find(&open)? + open.len();
    let end = start + elem[start..].find(&format!("</{tag}>"))?;
    let raw = &elem[start..end];
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let semi = rest[i..].find(';')?;
        let entity = &rest[i + 1..i + semi];
        match entity {
            "amp" => out.push('&'),
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            e if e.starts_with("#x") => out.push(char::from_u32(u32::from_str_radix(&e[2..], 16).ok()?)?),
            e if e.starts_with('#') => out.push(char::from_u32(e[1..].parse().ok()?)?),
            _ => return None,
        }
        rest = &rest[i + semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

impl S3Store {
    /// The listing entry of one version of `key` (object or marker), or `None`.
    pub(super) async fn find_listed(&self, key: &str, version: &VersionId) -> Result<Option<Listed>> {
        let full = self.full_key(key)?;
        let mut marker: Option<(String, String)> = None;
        loop {
            let (entries, next) = self.list_raw(&full, marker.as_ref(), MAX_PAGE_LIMIT).await?;
            let mut past_key = false;
            for e in entries {
                if e.full_key != full {
                    past_key = true;
                    break;
                }
                if e.version == version.0 {
                    return Ok(Some(e));
                }
            }
            match next {
                Some(m) if !past_key => marker = Some(m),
                _ => return Ok(None),
            }
        }
    }

    /// One `ListObjectVersions` page under the full-key `prefix`, merged into listing order,
    /// and the markers to continue from (when truncated).
    pub(super) async fn list_raw(
        &self,
        prefix: &str,
        after: Option<&(String, String)>,
        max: usize,
    ) -> Result<(Vec<Listed>, Option<(String, String)>)> {
        let mut req = self
            .inner
            .client
            .list_object_versions()
            .bucket(self.bucket())
            .prefix(prefix)
            .max_keys(i32::try_from(max.clamp(1, MAX_PAGE_LIMIT)).unwrap_or(1000));
        if let Some((k, v)) = after {
            req = req.key_marker(k);
            if !v.is_empty() {
                req = req.version_id_marker(v);
            }
        }
        let tap = BodyTap::default();
        let out = req.customize().interceptor(tap.clone()).send().await.map_err(|e| {
            self.fail(e, Action::ListVersions, None, None, &format!("cannot list versions under {prefix:?}"))
        })?;
        let mut entries: Vec<Listed> = Vec::new();
        for v in out.versions() {
            entries.push(Listed {
                full_key: v.key().unwrap_or_default().to_owned(),
                version: v.version_id().unwrap_or("null").to_owned(),
                is_latest: v.is_latest().unwrap_or(false),
                delete_marker: false,
                created: v.last_modified().map_or(Timestamp::UNIX_EPOCH, to_timestamp),
                size: v.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            });
        }
        for m in out.delete_markers() {
            entries.push(Listed {
                full_key: m.key().unwrap_or_default().to_owned(),
                version: m.version_id().unwrap_or("null").to_owned(),
                is_latest: m.is_latest().unwrap_or(false),
                delete_marker: true,
                created: m.last_modified().map_or(Timestamp::UNIX_EPOCH, to_timestamp),
                size: 0,
            });
        }
        // The SDK splits objects and delete markers into two lists. Merge them by key, the
        // latest first, then newest first by `LastModified`, and on a tie (servers that
        // keep whole seconds) in the order of the reply, which on AWS is one newest-first
        // sequence.
        let order = tap.take().map(|body| xml_order(&body)).unwrap_or_default();
        let pos = |e: &Listed| order.get(&(e.full_key.clone(), e.version.clone())).copied().unwrap_or(usize::MAX);
        entries.sort_by(|a, b| {
            a.full_key
                .as_bytes()
                .cmp(b.full_key.as_bytes())
                .then(b.is_latest.cmp(&a.is_latest))
                .then(b.created.cmp(&a.created))
                // Only on a tie: the lookup clones the key.
                .then_with(|| pos(a).cmp(&pos(b)))
        });
        let next = if out.is_truncated().unwrap_or(false) {
            match (out.next_key_marker(), entries.last()) {
                (Some(k), _) => Some((k.to_owned(), out.next_version_id_marker().unwrap_or_default().to_owned())),
                (None, Some(last)) => Some((last.full_key.clone(), last.version.clone())),
                (None, None) => None,
            }
        } else {
            None
        };
        Ok((entries, next))
    }

    /// Fills retention, legal hold and checksum of listed objects with `HeadObject`s, at
    /// most [`HEAD_CONCURRENCY`] at a time.
    pub(super) async fn enrich(&self, listed: Vec<Listed>) -> Result<Vec<ObjectVersion>> {
        let sem = Arc::new(tokio::sync::Semaphore::new(HEAD_CONCURRENCY));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, e) in listed.iter().enumerate() {
            if e.delete_marker {
                continue;
            }
            let (client, bucket, full, version) =
                (self.inner.client.clone(), self.bucket().to_owned(), e.full_key.clone(), e.version.clone());
            let sem = sem.clone();
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, head_raw(&client, &bucket, &full, Some(&version)).await)
            });
        }
        let mut heads: Vec<Option<HeadObjectOutput>> = vec![None; listed.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, res) = joined.map_err(|e| StoreError::io("a listing task failed", e))?;
            match res {
                Ok(out) => heads[i] = Some(out),
                // Removed between the listing and the head: leave it out.
                Err(f) if f.is_not_found() => {}
                Err(f) => {
                    let e = &listed[i];
                    let key = self.store_key(&e.full_key).to_owned();
                    let v = VersionId(e.version.clone());
                    return Err(f.into_store(self, Action::Head, Some(&key), Some(&v), "cannot read metadata"));
                }
            }
        }
        let mut out = Vec::with_capacity(listed.len());
        for (e, head) in listed.into_iter().zip(heads) {
            let key = self.store_key(&e.full_key).to_owned();
            if e.delete_marker {
                out.push(e.marker_meta(key));
                continue;
            }
            let Some(head) = head else { continue };
            let mut meta = meta_from_head(&key, Some(&VersionId(e.version.clone())), &head, e.is_latest)?;
            meta.version = VersionId(e.version);
            // The listing's time (milliseconds on S3; HeadObject's Last-Modified has whole
            // seconds), so the full and the lean listings agree.
            meta.created = e.created;
            out.push(meta);
        }
        Ok(out)
    }

    pub(super) async fn list_async(
        &self,
        prefix: &str,
        token: Option<&str>,
        limit: usize,
    ) -> Result<Page<ObjectVersion>> {
        let (found, next) = self.list_listed(prefix, token, limit).await?;
        let items = self.enrich(found).await?;
        Ok(Page { items, next })
    }

    /// The latest object versions of one `list` page, as listed (no `HeadObject`).
    pub(super) async fn list_listed(
        &self,
        prefix: &str,
        token: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Listed>, Option<String>)> {
        let mut after = match token {
            Some(t) => Some((decode_list_token(t)?, String::new())),
            None => None,
        }
        .map(|(k, v)| (self.inner.location.full_key(&k), v));
        let full_prefix = self.inner.location.full_key(prefix);
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        let mut found: Vec<Listed> = Vec::new();
        let mut more = true;
        while found.len() <= limit && more {
            let (entries, next) = self.list_raw(&full_prefix, after.as_ref(), MAX_PAGE_LIMIT).await?;
            found.extend(entries.into_iter().filter(|e| e.is_latest && !e.delete_marker));
            more = next.is_some();
            after = next;
        }
        let has_more = found.len() > limit;
        found.truncate(limit);
        let next = if has_more { found.last().map(|e| hex::encode(self.store_key(&e.full_key))) } else { None };
        Ok((found, next))
    }

    /// Listing entries as the SDK listed them, keys relative to the store.
    pub(super) fn entries(&self, listed: Vec<Listed>) -> Vec<ListEntry> {
        listed
            .into_iter()
            .map(|e| ListEntry {
                key: self.store_key(&e.full_key).to_owned(),
                version: VersionId(e.version),
                created: e.created,
                is_latest: e.is_latest,
                delete_marker: e.delete_marker,
                size: e.size,
            })
            .collect()
    }

    pub(super) async fn list_versions_async(
        &self,
        prefix: &str,
        token: Option<&str>,
        limit: usize,
    ) -> Result<Page<ObjectVersion>> {
        let (found, next) = self.list_versions_listed(prefix, token, limit).await?;
        let items = self.enrich(found).await?;
        Ok(Page { items, next })
    }

    /// The versions and markers of one `list_versions` page, as listed (no `HeadObject`).
    pub(super) async fn list_versions_listed(
        &self,
        prefix: &str,
        token: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Listed>, Option<String>)> {
        let mut after = match token {
            Some(t) => {
                let (k, v) = decode_versions_token(t)?;
                Some((self.inner.location.full_key(&k), v))
            }
            None => None,
        };
        let full_prefix = self.inner.location.full_key(prefix);
        let limit = limit.clamp(1, MAX_PAGE_LIMIT);
        // Pages end where the server's pages end (its markers become the token): the two
        // lists of a reply are merged here, and cutting a page anywhere else could skip
        // an entry the merge moved past the cut.
        let mut found: Vec<Listed> = Vec::new();
        loop {
            let want = limit - found.len();
            let (entries, next) = self.list_raw(&full_prefix, after.as_ref(), want).await?;
            found.extend(entries);
            after = next;
            if after.is_none() || found.len() >= limit {
                break;
            }
        }
        let next = after.map(|(k, v)| format!("{}.{v}", hex::encode(self.store_key(&k))));
        Ok((found, next))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn xml_order_interleaves_versions_and_markers() {
        let body = br#"<ListVersionsResult><Version><Key>a&amp;b</Key><VersionId>3</VersionId></Version>
            <DeleteMarker><Key>a&amp;b</Key><VersionId>2</VersionId></DeleteMarker>
            <Version><Key>a&amp;b</Key><VersionId>1</VersionId></Version>
            <DeleteMarker><Key>&#233;</Key><VersionId>9</VersionId></DeleteMarker></ListVersionsResult>"#;
        let o = super::xml_order(body);
        let at = |k: &str, v: &str| o[&(k.to_owned(), v.to_owned())];
        assert_eq!((at("a&b", "3"), at("a&b", "2"), at("a&b", "1"), at("é", "9")), (0, 1, 2, 3));
    }

    /// Runs of one kind then the other, both first, elements holding the other's tag name in
    /// text, and a last element with no end: every element found once, in order.
    #[test]
    fn xml_order_runs_of_each_kind_in_order() {
        let v = |k: &str, id: &str| format!("<Version><Key>{k}</Key><VersionId>{id}</VersionId></Version>");
        let m = |k: &str, id: &str| format!("<DeleteMarker><Key>{k}</Key><VersionId>{id}</VersionId></DeleteMarker>");
        let mut body = String::from("<ListVersionsResult>");
        let mut want = Vec::new();
        for i in 0..50 {
            let (k, id) = (format!("k{i}"), format!("v{i}"));
            body += &if i < 20 || (35..40).contains(&i) { v(&k, &id) } else { m(&k, &id) };
            want.push((k, id));
        }
        body += &v("&lt;Version&gt;", "x");
        want.push(("<Version>".into(), "x".into()));
        body += "<DeleteMarker><Key>cut</Key>";
        let o = super::xml_order(body.as_bytes());
        assert_eq!(o.len(), want.len());
        for (n, w) in want.iter().enumerate() {
            assert_eq!(o[w], n, "{w:?}");
        }
        let first_marker = format!("<ListVersionsResult>{}{}", m("a", "1"), v("b", "2"));
        let o = super::xml_order(first_marker.as_bytes());
        assert_eq!((o[&("a".into(), "1".into())], o[&("b".into(), "2".into())]), (0, 1));
    }
}
