//! Request heads in, answers out: the pages, the error answers and the
//! WebSocket upgrade.

use super::routes::{self, Endpoint, Page, Route};
use super::{duration_ms, metrics, ConnId, Engine};
use crate::http::parse_request;
use crate::http::response::{self, Connection, Status};
use crate::ws::{extension, handshake};

/// The built-in browser page.
pub(super) const INDEX_HTML: &str = include_str!("../chat/page/index.html");

/// While a connection is owed more than this, its further pipelined
/// requests wait unparsed (and the driver stops reading it) until the
/// answers drain, as nginx does: a client that pipelines without reading
/// costs at most this plus one answer, not an answer per request sent.
pub(super) const PIPELINE_PAUSE: usize = 64 * 1024;

/// What the request handler did with the bytes it was given.
pub(super) enum Step {
    /// The head is incomplete.
    NeedMore,
    /// A request of this many bytes was answered; go on with the rest.
    Next(usize),
    /// The connection reads no more requests.
    Stop,
}

impl Engine {
    /// Parses and answers one request at the start of `buf`.
    pub(super) fn on_request(&mut self, id: ConnId, buf: &[u8]) -> Step {
        let req = match parse_request(buf, self.config.max_head) {
            Ok(None) => return Step::NeedMore,
            Ok(Some(req)) => req,
            Err(e) => {
                log::debug!("connection {id}: {e}");
                self.refuse(id, e.status(), Connection::Close);
                return Step::Stop;
            }
        };
        let used = req.head_len;
        if let Some(retry_after_s) = self.over_connection_limit(id) {
            self.refuse_limited(id, retry_after_s);
            return Step::Stop;
        }
        let connection = Connection::for_request(&req);
        if let Some(session) = self.sessions.get_mut(id) {
            session.next_request(self.now_ms);
        }
        let connection = match routes::route(&req, &self.config.allowed_origins) {
            Route::Upgrade {
                endpoint,
                key,
                query,
                extensions,
            } => {
                let head = buf.get(..used).unwrap_or_default();
                if let Err(retry_after_s) = self.admit_session(id, head) {
                    self.refuse_limited(id, retry_after_s);
                    return Step::Stop;
                }
                self.upgrade(id, endpoint, key, query, extensions);
                return Step::Next(used);
            }
            Route::Serve { page, head_only } => {
                self.serve(id, page, head_only, connection);
                connection
            }
            Route::Refuse { status, close } => {
                let connection = if close { Connection::Close } else { connection };
                self.refuse(id, status, connection);
                connection
            }
        };
        match connection {
            Connection::Close => Step::Stop,
            _ => Step::Next(used),
        }
    }

    fn upgrade(
        &mut self,
        id: ConnId,
        endpoint: Endpoint,
        key: &[u8],
        query: Option<&str>,
        extensions: Option<&[u8]>,
    ) {
        let accept = handshake::accept_key(key);
        let deflate = extensions
            .filter(|_| self.config.deflate)
            .and_then(extension::negotiate);
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        response::write_switching_protocols(session.out.writer(&mut self.pool), &accept, deflate);
        let window = deflate.map(|d| d.server_window_bits);
        session.open(endpoint, self.config.max_message_size, window, self.now_ms);
        self.mark_dirty(id);
        self.totals.count_status(Status::SwitchingProtocols.code());
        self.totals.websocket_sessions += 1;
        if endpoint == Endpoint::Chat {
            if self.refuse_banned(id) {
                return;
            }
            let now = self.now_ms;
            let addr = self.client_of(id);
            let (chat, mut mailer) = self.mailer();
            chat.on_connect_from(id, query, addr, now, &mut mailer);
        }
        self.upgraded(id);
        self.arm(id, self.now_ms + self.idle_half_ms());
    }

    fn serve(&mut self, id: ConnId, page: Page, head_only: bool, connection: Connection) {
        if page == Page::Healthz {
            // The benchmarked path: one precomputed response, one copy.
            if let Some(session) = self.sessions.get_mut(id) {
                session
                    .out
                    .writer(&mut self.pool)
                    .extend_from_slice(response::healthz_response(head_only, connection));
            }
            return self.answered(id, Status::Ok, connection);
        }
        self.text.clear();
        let (content_type, body): (&str, &[u8]) = match page {
            Page::Index => ("text/html; charset=utf-8", INDEX_HTML.as_bytes()),
            Page::Healthz => ("text/plain", b"ok\n"),
            Page::Rules => (
                "text/plain; charset=utf-8",
                self.config
                    .rules
                    .as_deref()
                    .unwrap_or(crate::config::DEFAULT_RULES)
                    .as_bytes(),
            ),
            Page::Stats => {
                metrics::render_stats(&mut self.text, self.chat.cluster_counts());
                ("application/json", self.text.as_bytes())
            }
            Page::Metrics => {
                match &self.process {
                    None => metrics::render_metrics(
                        &mut self.text,
                        self.chat.counts(),
                        self.sessions.len(),
                        &self.totals,
                        &self.chat.metrics(),
                    ),
                    Some(p) => {
                        // Every loop's counters: this one's as they are now,
                        // the others' as they last published them.
                        self.publish();
                        let mut sum = p.sum();
                        sum.chat.pairs = self.chat.metrics().pairs;
                        metrics::render_metrics(
                            &mut self.text,
                            self.chat.counts(),
                            p.open_connections(),
                            &sum.totals,
                            &sum.chat,
                        );
                        p.render_loops(&mut self.text);
                        p.render_cluster(&mut self.text);
                    }
                }
                let unix_ms = self.unix_ms();
                self.safety.render_metrics(&mut self.text, unix_ms);
                if let Some(extra) = &self.extra_metrics {
                    extra.render(&mut self.text);
                }
                (
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.text.as_bytes(),
                )
            }
        };
        if let Some(session) = self.sessions.get_mut(id) {
            response::write_response(
                session.out.writer(&mut self.pool),
                Status::Ok,
                content_type,
                body,
                head_only,
                connection,
                &[],
            );
        }
        self.answered(id, Status::Ok, connection);
    }

    pub(super) fn refuse(&mut self, id: ConnId, status: Status, connection: Connection) {
        if let Some(session) = self.sessions.get_mut(id) {
            response::write_error(session.out.writer(&mut self.pool), status, connection);
        }
        self.answered(id, status, connection);
    }

    /// After an answer: flush it; a closing answer drains the connection;
    /// a pipelining client that is owed too much waits.
    pub(super) fn answered(&mut self, id: ConnId, status: Status, connection: Connection) {
        self.totals.count_status(status.code());
        self.mark_dirty(id);
        if connection == Connection::Close {
            return self.drain(id);
        }
        if let Some(session) = self.sessions.get_mut(id) {
            if session.out.unsent_len() > PIPELINE_PAUSE {
                session.set_paused(true);
            }
        }
    }

    pub(super) fn idle_half_ms(&self) -> u64 {
        (duration_ms(self.config.idle_timeout) / 2).max(1)
    }
}
