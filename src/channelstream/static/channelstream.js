/**
 * channelstream.js: the browser client of channelstream (a plain ES module, no dependencies).
 *
 * It keeps the API of the 0.7 JS client (`@channelstream/channelstream`): the same class, URL
 * properties, methods, request mutators and callbacks, so a page switches by changing its
 * import. What it adds:
 *
 * - reconnects by itself with exponential back-off and jitter, capped at `maxBounceIv`;
 * - when the server closes with 4001 (unknown connection) it calls `connect()` again through
 *   the web app; on any other loss it re-attaches with the same conn_id and the server replays
 *   what was missed (catchup), dropping replays it has already delivered;
 * - it keeps the server's `epoch` (from the connect answer) and the highest `seq` of the frames
 *   it got (`epoch`, `lastSeq`); whenever it calls `connect()` again after a first connect
 *   (4001, or a page calling it again), the body it posts to `connectUrl` carries
 *   `recover: {epoch, seq}`, which **the web app must pass on** to channelstream's `/connect`:
 *   the new connection then first gets what was missed (catchup);
 * - `onGap(channel, seq)` is called when messages of a channel were lost for good: on each
 *   `{"type": "gap"}` frame (not passed to `listenMessageCallback`; `channel` null: direct
 *   messages were lost), and, once per channel of the connection, when the connect answer
 *   says `recovered: false` (a gap frame for the same loss is then not signalled again).
 *   `seq` is the page's position in the current epoch (0 after an epoch change): frames after
 *   it were lost, and `/history` with `since_seq: seq` has what history kept of them. Reload
 *   that channel (e.g. from `/history` through the web app);
 * - falls back from WebSocket to server-sent events to long polling when a transport is
 *   missing (`noWebsocket`, no `WebSocket` or `EventSource` in the page) or cannot open; once
 *   it has an epoch, its long polls with a `conn_id` (not those with a token) carry `epoch`
 *   and `seq` (`lastSeq`), so a cluster serves them without writing to its log;
 * - heartbeats both ways: `{"type": "heartbeat"}` every 10 s over a websocket, and a watchdog
 *   that reconnects when the server's heartbeats stop;
 * - resubscribes after a reconnect to the channels the page had joined;
 * - `close()` (and `closeConnection()`) really stop: no socket, poll or timer is left behind;
 * - connection tokens: with `getToken` set, `connect()` asks the page for a token instead of
 *   calling `connectUrl`, and listens with `?token=` (no `/connect` round trip).
 *   `getToken(recover)` may be async and returns the token string from the web app; `recover`
 *   is null on a first connect, else `{epoch, seq}`, which the web app puts in the token's
 *   `recover` claim. When the token expires (close 4004) the client asks for a fresh one
 *   and reconnects with `recover`, so nothing is lost; a token refused by the server (401)
 *   also makes it ask again, after the back-off. The first frame of a token listener
 *   (`{"type": "position"}`) gives the epoch and seq a connect answer would;
 * - `onDisconnected(reason)` is called when the application ended the connection (close
 *   4003, `/user_disconnect`): the client stops for good, whichever way it connected;
 * - HTTP statuses 200-299 only count as success; request mutators may add headers.
 *
 *     import {ChannelStreamConnection} from 'http://127.0.0.1:8000/static/channelstream.js';
 *     const connection = new ChannelStreamConnection();
 *     connection.connectUrl = '/connect';              // your web app
 *     connection.messageUrl = '/message';              // your web app
 *     connection.websocketUrl = 'ws://127.0.0.1:8000/ws';      // channelstream
 *     connection.longPollUrl = 'http://127.0.0.1:8000/listen'; // channelstream
 *     connection.listenMessageCallback = (messages) => { for (const m of messages) show(m); };
 *     connection.connect();
 */

const WS_CONNECTING = 0; // WebSocket.readyState values (the page may have removed WebSocket)
const WS_OPEN = 1;
const WS_NORMAL = 1000;
const WS_POLICY = 1008;
const UNKNOWN_CONNECTION = 4001;
const USER_DISCONNECTED = 4003;
const TOKEN_EXPIRED = 4004;
const ABNORMAL = 1006;

/** Connection states reported to `connectionStateCallback`. */
export const ConnectionState = Object.freeze({
    IDLE: 'idle',
    CONNECTING: 'connecting',
    CONNECTED: 'connected',
    RECONNECTING: 'reconnecting',
    CLOSED: 'closed',
});

/** A request to the web app, handed to mutators before it is sent. */
export class ChannelStreamRequest {
    constructor(url = '', body = null, method = null) {
        /** Headers to set: `{name, value}` objects (mutators may push more). */
        this.headers = [];
        this.body = body;
        this.url = url;
        /** The HTTP method; null: POST with a body, GET without. */
        this.method = method;
        /** The XMLHttpRequest, once sent. */
        this.request = null;
        this.timeout = 0;
        this.withCredentials = false;
    }

    handleError(request, data) {}

    handleResponse(request, data) {}

    handleRequest(request) {}

    /** Send it: `handleResponse(xhr, data)` for 2xx, else `handleError(xhr, data)`. */
    execute(verb) {
        const xhr = new XMLHttpRequest();
        this.request = xhr;
        const method = verb || this.method || (this.body !== null && this.body !== undefined ? 'POST' : 'GET');
        xhr.open(method, this.url);
        xhr.timeout = this.timeout;
        xhr.withCredentials = this.withCredentials;
        const hasBody = this.body !== null && this.body !== undefined;
        if (hasBody) {
            xhr.setRequestHeader('Content-Type', 'application/json');
        }
        for (const header of this.headers || []) {
            xhr.setRequestHeader(header.name, header.value);
        }
        xhr.onreadystatechange = () => {
            if (xhr.readyState !== XMLHttpRequest.DONE) {
                return;
            }
            let data = xhr.responseText;
            try {
                data = JSON.parse(data);
            } catch (error) {
                // not JSON: hand over the text
            }
            if (xhr.status >= 200 && xhr.status < 300) {
                this.handleResponse(xhr, data);
            } else {
                this.handleError(xhr, data);
            }
        };
        xhr.send(hasBody ? JSON.stringify(this.body) : null);
        return xhr;
    }

    abort() {
        if (this.request) {
            this.request.onreadystatechange = null;
            this.request.abort();
        }
    }
}

/** `ws(s)://` for `http(s)://` (and an absolute URL for a relative one). */
function absoluteUrl(url, websocket) {
    const absolute = new URL(url, window.location.href);
    if (websocket && absolute.protocol.startsWith('http')) {
        absolute.protocol = absolute.protocol === 'https:' ? 'wss:' : 'ws:';
    } else if (!websocket && absolute.protocol.startsWith('ws')) {
        absolute.protocol = absolute.protocol === 'wss:' ? 'https:' : 'http:';
    }
    return absolute.href;
}

/** `url` with its last path segment (`/ws`, `/listen`, `/sse`) replaced by `endpoint`. */
function siblingUrl(url, endpoint, websocket) {
    if (!url) {
        return '';
    }
    const absolute = new URL(absoluteUrl(url, websocket));
    absolute.pathname = absolute.pathname.replace(/\/[^/]*$/, '/' + endpoint);
    absolute.search = '';
    return absolute.href;
}

function withConnId(url, connId) {
    return url + (url.includes('?') ? '&' : '?') + 'conn_id=' + encodeURIComponent(connId);
}

/** The reason text of a close: a websocket's close frame, or an SSE `close` event's second
 *  data line. */
function closeReason(event) {
    if (event && typeof event.reason === 'string') {
        return event.reason;
    }
    if (event && typeof event.data === 'string' && event.data.includes('\n')) {
        return event.data.slice(event.data.indexOf('\n') + 1);
    }
    return '';
}

function withToken(url, token) {
    return url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
}

/**
 * A connection to channelstream: `connect()` through the web app, then listen.
 */
export class ChannelStreamConnection {
    static get version() {
        return '0.8.0';
    }

    constructor() {
        this.debug = false;
        /** Channels the user should be in (kept up to date by subscribe/unsubscribe). */
        this.channels = [];
        /** Sent as `username` to `connectUrl` and `userStateUrl`. */
        this.username = 'Anonymous';
        /** The conn_id the web app got from channelstream's /connect. */
        this.connectionId = null;
        /** The open WebSocket, if that is the transport. */
        this.websocket = null;
        /** True while a listener (websocket, event stream or long poll) is open. */
        this.connected = false;

        // --- your web app
        this.connectUrl = '';
        this.disconnectUrl = '';
        this.subscribeUrl = '';
        this.unsubscribeUrl = '';
        this.userStateUrl = '';
        this.messageUrl = '';
        this.messageEditUrl = '';
        this.messageDeleteUrl = '';
        // --- channelstream (any one is enough: the others are derived from it)
        this.websocketUrl = '';
        this.longPollUrl = '';
        /** Server-sent events URL (default: derived from longPollUrl or websocketUrl). */
        this.sseUrl = '';

        /** Reconnect by itself after a loss. */
        this.shouldReconnect = true;
        /** Send `{"type": "heartbeat"}` over the websocket every `heartbeatInterval` ms. */
        this.heartbeats = true;
        this.heartbeatInterval = 10000;
        /** Reconnect when nothing (not even a server heartbeat) came for this long (ms);
         *  armed once the server has sent a heartbeat. 0: never. */
        this.heartbeatTimeout = 30000;
        /** Base delay of the reconnect back-off (ms): tries wait about 1, 2, 4, 8... times it. */
        this.increaseBounceIv = 2000;
        /** Longest wait between two tries (ms). */
        this.maxBounceIv = 60000;
        /** The current back-off delay (ms). */
        this._currentBounceIv = 0;
        /** Skip the websocket (use server-sent events, then long polling). */
        this.noWebsocket = false;
        /** Transports in order of preference; unavailable ones are skipped. */
        this.transports = ['websocket', 'sse', 'longpoll'];
        /** The transport in use ('websocket', 'sse', 'longpoll'), or null. */
        this.transport = null;
        /** 'idle', 'connecting', 'connected', 'reconnecting' or 'closed'. */
        this.state = ConnectionState.IDLE;
        /** Timeout of the requests to the web app (ms). */
        this.requestTimeout = 15000;
        /** Longest a long poll may take before it counts as lost (ms). */
        this.longPollTimeout = 30000;
        /** Send cookies with cross-origin requests to the web app. */
        this.withCredentials = false;

        /** Functions that change a request before it is sent, per request type. */
        this.mutators = {
            connect: [],
            message: [],
            messageEdit: [],
            messageDelete: [],
            subscribe: [],
            unsubscribe: [],
            disconnect: [],
            userState: [],
        };

        this._attempts = 0;
        this._generation = 0; // bumped whenever the listener changes: stale events are ignored
        this._stopped = false;
        this._retryTimer = null;
        this._heartbeatTimer = null;
        this._watchdogTimer = null;
        this._lastHeard = 0;
        this._eventSource = null;
        this._ajaxListen = null;
        this._connectRequest = null;
        this._ladder = [];
        this._rung = 0;
        this._workingTransport = null;
        this._seen = new Set();
        this._seenOrder = [];
        /** The server state's epoch, from the last connect answer (null: none yet). A page
         *  may set it, with `lastSeq`, before `connect()` to recover across a page load. */
        this.epoch = null;
        /** The highest `seq` of the frames received in that epoch (0: none yet). */
        this.lastSeq = 0;
        this._seenSeqs = new Set(); // seqs delivered (bounded): catchup replays of them drop
        this._seenSeqOrder = [];
        // channels given onGap by a `recovered: false` answer: their gap frame, if the
        // server sends one too while it replays, is not signalled a second time
        this._gapsSignalled = new Set();
        this._onlineListener = () => this._retryNow();
        this._onlineListening = false;
        /** Set to `async (recover) => token` to connect with connection tokens from the web
         *  app instead of `connectUrl`; `recover` is null or `{epoch, seq}`, for the token's
         *  `recover` claim (see the top of this file). */
        this.getToken = null;
        this._token = null; // the token the listeners use (re-attaching reuses it)
        this._tokenAttempt = 0; // bumped per getToken call: a late answer is ignored
    }

    // ---------------------------------------------------------------- the web app

    _request(type, url, body, method) {
        const request = new ChannelStreamRequest(url, body, method || null);
        request.timeout = this.requestTimeout;
        request.withCredentials = this.withCredentials;
        for (const mutate of this.mutators[type] || []) {
            mutate(request);
        }
        return request;
    }

    /** Add `func(request)` to the mutators of a request type ('connect', 'message', ...). */
    addMutator(type, func) {
        if (!this.mutators[type]) {
            this.mutators[type] = [];
        }
        this.mutators[type].push(func);
    }

    /** Ask the web app for a connection (`connectUrl`, or a token from `getToken`), then
     *  listen. */
    connect() {
        this._stopped = false;
        this._watchOnline(true);
        this._clearRetry();
        if (this._connectRequest) {
            this._connectRequest.abort();
        }
        this._setState(this.state === ConnectionState.RECONNECTING ? ConnectionState.RECONNECTING
            : ConnectionState.CONNECTING);
        if (typeof this.getToken === 'function') {
            this._connectWithToken();
            return;
        }
        const wanted = [...(this.channels || [])];
        const body = {username: this.username, channels: this.channels};
        // connected before: ask for what was missed since (the web app passes it on)
        const recover = this.epoch !== null && this.epoch !== undefined
            ? {epoch: this.epoch, seq: this.lastSeq || 0} : null;
        if (recover) {
            body.recover = recover;
        }
        const request = this._request('connect', this.connectUrl, body);
        request.handleError = (xhr, data) => {
            this._connectRequest = null;
            this._handleConnectError(xhr, data);
        };
        request.handleResponse = (xhr, data) => {
            this._connectRequest = null;
            this._handleConnect(xhr, data, wanted, recover);
        };
        this._connectRequest = request;
        request.execute();
    }

    /** `connect()` with a token: ask the page for a fresh one (with `recover` once connected
     *  before), then listen with it; a failing `getToken` is retried after the back-off. */
    _connectWithToken() {
        const attempt = ++this._tokenAttempt;
        const recover = this.epoch !== null && this.epoch !== undefined
            ? {epoch: this.epoch, seq: this.lastSeq || 0} : null;
        this._token = null;
        this.connectionId = null;
        Promise.resolve()
            .then(() => this.getToken(recover))
            .then((token) => {
                if (attempt !== this._tokenAttempt || this._stopped) {
                    return;
                }
                if (typeof token !== 'string' || !token) {
                    throw new Error('getToken() returned no token');
                }
                this._token = token;
                this.startListening(null, null);
            })
            .catch((error) => {
                if (attempt === this._tokenAttempt && !this._stopped) {
                    this._log('getToken failed', error);
                    this._handleConnectError(null, error);
                }
            });
    }

    /** Update the user's state through the web app (`userStateUrl`). */
    updateUserState(stateObj) {
        const request = this._request('userState', this.userStateUrl, {
            username: this.username,
            conn_id: this.connectionId,
            update_state: stateObj,
        });
        request.handleError = this._handleSetUserStateError.bind(this);
        request.handleResponse = this._handleSetUserState.bind(this);
        request.execute();
    }

    /** Join channels through the web app (`subscribeUrl`); nothing is sent for none. */
    subscribe(channels) {
        const request = this._request('subscribe', this.subscribeUrl, {
            channels: channels,
            conn_id: this.connectionId,
        });
        request.handleError = this._handleSubscribeError.bind(this);
        request.handleResponse = this._handleSubscribe.bind(this);
        if (request.body.channels && request.body.channels.length) {
            request.execute('POST');
        }
    }

    /** Leave channels through the web app (`unsubscribeUrl`). */
    unsubscribe(channels) {
        const request = this._request('unsubscribe', this.unsubscribeUrl, {
            channels: channels,
            conn_id: this.connectionId,
        });
        request.handleError = this._handleUnsubscribeError.bind(this);
        request.handleResponse = this._handleUnsubscribe.bind(this);
        request.execute('POST');
    }

    /** The channels of `channels` not joined yet. */
    calculateSubscribe(channels) {
        return (channels || []).filter((channel) => this.channels.indexOf(channel) === -1);
    }

    /** The channels of `channels` that are joined. */
    calculateUnsubscribe(channels) {
        return (channels || []).filter((channel) => this.channels.indexOf(channel) !== -1);
    }

    /** End the connection (`disconnectUrl?conn_id=...`) and stop listening for good. */
    disconnect() {
        const request = this._request(
            'disconnect',
            withConnId(this.disconnectUrl, this.connectionId),
            {conn_id: this.connectionId},
        );
        request.handleResponse = this._handleDisconnect.bind(this);
        request.handleError = this._handleDisconnectError.bind(this);
        if (this.disconnectUrl && this.connectionId) {
            request.execute();
        }
        this.close();
    }

    /** POST a message object to the web app (`messageUrl`). */
    message(message) {
        const request = this._request('message', this.messageUrl, message);
        request.handleError = this._handleMessageError.bind(this);
        request.handleResponse = this._handleMessage.bind(this);
        request.execute('POST');
    }

    /** DELETE a message through the web app (`messageDeleteUrl`, JSON body). */
    delete(message) {
        const request = this._request('messageDelete', this.messageDeleteUrl, message, 'DELETE');
        request.handleError = this._handleMessageDeleteError.bind(this);
        request.handleResponse = this._handleMessageDelete.bind(this);
        request.execute('DELETE');
    }

    /** PATCH a message through the web app (`messageEditUrl`). */
    edit(message) {
        const request = this._request('messageEdit', this.messageEditUrl, message, 'PATCH');
        request.handleError = this._handleMessageEditError.bind(this);
        request.handleResponse = this._handleMessageEdit.bind(this);
        request.execute('PATCH');
    }

    // ---------------------------------------------------------------- listening

    _transportAvailable(name) {
        if (name === 'websocket') {
            return !this.noWebsocket && typeof window.WebSocket === 'function'
                && Boolean(this._websocketUrl());
        }
        if (name === 'sse') {
            return typeof window.EventSource === 'function' && Boolean(this._sseUrl());
        }
        if (name === 'longpoll') {
            return Boolean(this._longPollUrl());
        }
        return false;
    }

    _websocketUrl() {
        if (this.websocketUrl) {
            return absoluteUrl(this.websocketUrl, true);
        }
        return siblingUrl(this.longPollUrl || this.sseUrl, 'ws', true);
    }

    _sseUrl() {
        if (this.sseUrl) {
            return absoluteUrl(this.sseUrl, false);
        }
        return siblingUrl(this.longPollUrl || this.websocketUrl, 'sse', false);
    }

    _longPollUrl() {
        if (this.longPollUrl) {
            return absoluteUrl(this.longPollUrl, false);
        }
        return siblingUrl(this.sseUrl || this.websocketUrl, 'listen', false);
    }

    /** A listener URL: with the connection token if there is one, else `connectionId`. */
    _listenUrl(url) {
        return this._token ? withToken(url, this._token) : withConnId(url, this.connectionId);
    }

    /** Open a listener for `connectionId` (or the token): the first transport that works. */
    startListening(request, data) {
        this.beforeListeningCallback(request, data);
        this._ladder = this.transports.filter((name) => this._transportAvailable(name));
        const working = this._ladder.indexOf(this._workingTransport);
        this._rung = working === -1 ? 0 : working;
        this._openRung();
    }

    _openRung() {
        this._closeListener();
        const name = this._ladder[this._rung];
        if (name === 'websocket') {
            this.openWebsocket();
        } else if (name === 'sse') {
            this.openSSE();
        } else if (name === 'longpoll') {
            this.openLongPoll();
        } else {
            this._log('no transport available', this.transports);
            this.listenErrorCallback(null, {error: 'no transport available'});
        }
    }

    /** Listen over a websocket. */
    openWebsocket() {
        const generation = this._newListener('websocket');
        let websocket;
        try {
            websocket = new WebSocket(this._listenUrl(this._websocketUrl()));
        } catch (error) { // e.g. refused by the page's Content-Security-Policy
            this._failLater(generation, error);
            return;
        }
        let opened = false;
        this.websocket = websocket;
        websocket.onopen = (event) => {
            if (generation !== this._generation) {
                return;
            }
            opened = true;
            this._handleListenOpen(event);
            this.createHeartBeats();
        };
        websocket.onmessage = (event) => {
            if (generation === this._generation) {
                this._handleListenWSMessageEvent(event);
            }
        };
        websocket.onerror = (event) => {
            if (generation === this._generation) {
                this._handleListenErrorEvent(event);
            }
        };
        websocket.onclose = (event) => {
            if (generation === this._generation) {
                this._handleWebsocketCloseEvent(event, opened);
            }
        };
    }

    /** Listen over server-sent events. */
    openSSE() {
        const generation = this._newListener('sse');
        let source;
        try {
            source = new EventSource(this._listenUrl(this._sseUrl()));
        } catch (error) {
            this._failLater(generation, error);
            return;
        }
        let opened = false;
        this._eventSource = source;
        source.onopen = (event) => {
            if (generation === this._generation && !opened) {
                opened = true;
                this._handleListenOpen(event);
            }
        };
        source.onmessage = (event) => {
            if (generation === this._generation) {
                this._receive(JSON.parse(event.data));
            }
        };
        source.addEventListener('close', (event) => {
            if (generation === this._generation) {
                source.close();
                this._listenClosed(parseInt(event.data, 10) || ABNORMAL, true, event);
            }
        });
        source.onerror = (event) => {
            if (generation !== this._generation) {
                return;
            }
            source.close(); // reconnects are ours (back-off, 4001), not EventSource's
            this._handleListenErrorEvent(event);
            this._listenClosed(ABNORMAL, opened, event);
        };
    }

    /** Listen by long polling. */
    openLongPoll() {
        const generation = this._newListener('longpoll');
        this._poll(generation, false);
    }

    _poll(generation, opened) {
        let url = this._listenUrl(this._longPollUrl());
        if (!this._token && typeof this.epoch === 'string') {
            // where this page is: the server then serves the poll without writing to its
            // cluster's log (a connection token's first frame gives the position instead)
            url += '&epoch=' + encodeURIComponent(this.epoch) + '&seq=' + (this.lastSeq || 0);
        }
        const request = new ChannelStreamRequest(url);
        request.timeout = this.longPollTimeout;
        request.handleResponse = (xhr, data) => {
            if (generation !== this._generation) {
                return;
            }
            if (!opened) {
                opened = true;
                this._handleListenOpen(xhr, data);
            }
            this._heard();
            this._receive(Array.isArray(data) ? data : []);
            if (generation === this._generation) {
                this._poll(generation, true);
            }
        };
        request.handleError = (xhr, data) => {
            if (generation !== this._generation) {
                return;
            }
            // 401: unknown connection (never existed, collected, or disconnected); 422: bad id
            const code = xhr.status === 401 || xhr.status === 422 ? UNKNOWN_CONNECTION : ABNORMAL;
            this._handleListenErrorEvent(xhr, data);
            this._listenClosed(code, opened || code === UNKNOWN_CONNECTION, xhr);
        };
        this._ajaxListen = request;
        request.execute('GET');
    }

    /** A listener that could not even be created: report it as one that did not open. */
    _failLater(generation, error) {
        setTimeout(() => {
            if (generation === this._generation) {
                this._handleListenErrorEvent(null, error);
                this._listenClosed(ABNORMAL, false, null);
            }
        }, 0);
    }

    _newListener(transport) {
        this._closeListener();
        this._generation += 1;
        this.transport = transport;
        this._lastHeard = 0;
        return this._generation;
    }

    /** Tear down the current listener without reporting anything. */
    _closeListener() {
        this._generation += 1;
        if (this._heartbeat !== undefined) {
            clearInterval(this._heartbeat);
            this._heartbeat = undefined;
        }
        this._stopWatchdog();
        if (this.websocket) {
            const websocket = this.websocket;
            websocket.onopen = websocket.onmessage = websocket.onerror = websocket.onclose = null;
            if (websocket.readyState === WS_CONNECTING || websocket.readyState === WS_OPEN) {
                websocket.close();
            }
            this.websocket = null;
        }
        if (this._eventSource) {
            this._eventSource.close();
            this._eventSource = null;
        }
        if (this._ajaxListen) {
            this._ajaxListen.abort();
            this._ajaxListen = null;
        }
        this.connected = false;
    }

    /** Start sending heartbeats over the websocket (every `heartbeatInterval` ms). */
    createHeartBeats() {
        if (this._heartbeat === undefined && this.websocket !== null && this.heartbeats) {
            this._heartbeat = setInterval(this._sendHeartBeat.bind(this), this.heartbeatInterval);
        }
    }

    _sendHeartBeat() {
        if (this.websocket && this.websocket.readyState === WS_OPEN && this.heartbeats) {
            this.websocket.send(JSON.stringify({type: 'heartbeat'}));
        }
    }

    _heard() {
        this._lastHeard = Date.now();
    }

    _startWatchdog() {
        this._stopWatchdog();
        if (!this.heartbeatTimeout || this.transport === 'longpoll') {
            return; // a long poll has its own timeout
        }
        const generation = this._generation;
        const period = Math.max(250, Math.min(this.heartbeatTimeout / 3, 5000));
        this._watchdogTimer = setInterval(() => {
            if (generation !== this._generation) {
                return;
            }
            if (this._serverSendsHeartbeats && Date.now() - this._lastHeard > this.heartbeatTimeout) {
                this._log('no heartbeat for', this.heartbeatTimeout, 'ms: reconnecting');
                this._closeListener();
                this._listenClosed(ABNORMAL, true, null);
            }
        }, period);
    }

    _stopWatchdog() {
        if (this._watchdogTimer !== null) {
            clearInterval(this._watchdogTimer);
            this._watchdogTimer = null;
        }
        this._serverSendsHeartbeats = false;
    }

    _handleListenOpen(request, data) {
        this.connected = true;
        this._workingTransport = this.transport;
        this._heard();
        this._startWatchdog();
        this._setState(ConnectionState.CONNECTED);
        this.listenOpenedCallback(request, data);
    }

    _handleListenWSMessageEvent(event) {
        this._heard();
        this._receive(JSON.parse(event.data));
    }

    /** Frames from any transport: heartbeats noted, replays dropped, the rest handed over. */
    _receive(frames) {
        this._heard();
        if (!Array.isArray(frames)) {
            return;
        }
        if (frames.length === 0) {
            this._serverSendsHeartbeats = true;
            this._attempts = 0; // a listener that hears the server is a healthy one
            this._currentBounceIv = 0;
            return;
        }
        this._attempts = 0;
        this._currentBounceIv = 0;
        const fresh = [];
        for (const frame of frames) {
            if (frame && frame.type === 'position') {
                this._position(frame);
                continue;
            }
            if (frame && frame.type === 'gap') {
                this._gapFrame(frame);
                continue;
            }
            if (frame && !frame.catchup && typeof frame.seq === 'number') {
                this._gapsSignalled.clear(); // live frames: the replay is over
            }
            if (this._firstSight(frame)) {
                fresh.push(frame);
            }
        }
        if (fresh.length) {
            this._handleListenMessageEvent(fresh);
        }
    }

    /** A token listener's first frame: its conn_id, the epoch and the seq its catchup starts
     *  from, as a connect answer gives them. */
    _position(frame) {
        if (typeof frame.conn_id === 'string') {
            this.connectionId = frame.conn_id; // for subscribe(), message(), disconnect()
        }
        if (typeof frame.epoch === 'string' && frame.epoch !== this.epoch) {
            this.epoch = frame.epoch; // a new server state: its seqs start anew
            this.lastSeq = 0;
            this._seenSeqs.clear();
            this._seenSeqOrder = [];
        }
        if (typeof frame.seq === 'number' && frame.seq > this.lastSeq) {
            this.lastSeq = frame.seq;
        }
    }

    /** A `gap` frame: messages of its channel were lost; tell the page (not twice for one
     *  loss). */
    _gapFrame(frame) {
        if (this._gapsSignalled.delete(frame.channel)) {
            return; // already signalled by the connect answer (`recovered: false`)
        }
        this._handleGap(frame.channel, typeof frame.seq === 'number' ? frame.seq : this.lastSeq);
    }

    _handleGap(channel, seq) {
        this.onGap(channel, seq);
    }

    /** Keep the highest seq; false for a catchup replay of a seq already delivered. */
    _noteSeq(frame) {
        const seq = frame.seq;
        if (typeof seq !== 'number') {
            return true;
        }
        if (seq > this.lastSeq) {
            this.lastSeq = seq;
        }
        if (this._seenSeqs.has(seq)) {
            return !frame.catchup;
        }
        this._seenSeqs.add(seq);
        this._seenSeqOrder.push(seq);
        if (this._seenSeqOrder.length > 2000) {
            this._seenSeqs.delete(this._seenSeqOrder.shift());
        }
        return true;
    }

    /** False for a catchup replay of a frame this page already got. */
    _firstSight(frame) {
        if (!frame) {
            return true;
        }
        if (!this._noteSeq(frame)) {
            return false;
        }
        if (!frame.uuid) {
            return true;
        }
        const key = [frame.type, frame.uuid, frame.edited || ''].join('|');
        if (this._seen.has(key)) {
            return !frame.catchup;
        }
        this._seen.add(key);
        this._seenOrder.push(key);
        if (this._seenOrder.length > 2000) {
            this._seen.delete(this._seenOrder.shift());
        }
        return true;
    }

    _handleListenMessageEvent(data) {
        this.listenMessageCallback(data);
    }

    _handleWebsocketCloseEvent(event, opened) {
        this._listenClosed(event.code, opened, event);
    }

    _handleListenErrorEvent(request, data) {
        this.listenErrorCallback(request, data);
    }

    /** The listener ended with a websocket close code: stop, connect anew, or re-attach. */
    _listenClosed(code, opened, event) {
        this._closeListener();
        if (opened) {
            this._gapsSignalled.clear(); // the next listener's gaps are new losses
        }
        if (this._stopped) {
            return;
        }
        this.listenCloseCallback(event, {code: code, transport: this.transport});
        if (code === USER_DISCONNECTED) {
            // the application ended this user's connections (logout): never reconnect
            this._stop(ConnectionState.CLOSED);
            this.onDisconnected(closeReason(event));
            this.connectionClosedCallback();
            return;
        }
        if (code === TOKEN_EXPIRED && typeof this.getToken === 'function') {
            this.connect(); // a fresh token, with recover: nothing is lost
            return;
        }
        if (code === WS_NORMAL || code === WS_POLICY) {
            // disconnected for good (/disconnect), or this page's origin is refused
            this._stop(ConnectionState.CLOSED);
            this.connectionClosedCallback();
            return;
        }
        if (!this.shouldReconnect) {
            this._stop(ConnectionState.CLOSED);
            return;
        }
        if (code === UNKNOWN_CONNECTION) {
            this.connectionId = null;
            this.retryConnection();
            return;
        }
        if (!opened && this._rung + 1 < this._ladder.length) {
            this._rung += 1; // this transport cannot open here: try the next one now
            this._log('falling back to', this._ladder[this._rung]);
            this._setState(ConnectionState.RECONNECTING);
            this._openRung();
            return;
        }
        if (!opened) {
            this._workingTransport = null; // nothing opened: start from the preferred one
        }
        this._scheduleRetry(() => this.startListening(null, null));
    }

    _nextDelay() {
        const ceiling = Math.min(this.maxBounceIv, this.increaseBounceIv * 2 ** this._attempts);
        this._attempts = Math.min(this._attempts + 1, 30);
        this._currentBounceIv = ceiling;
        return ceiling / 2 + Math.random() * (ceiling / 2);
    }

    _scheduleRetry(action) {
        this._clearRetry();
        this._setState(ConnectionState.RECONNECTING);
        const delay = this._nextDelay();
        this._log('retrying in', Math.round(delay), 'ms');
        this._retryAction = action;
        this._retryTimer = setTimeout(() => {
            this._retryTimer = null;
            this._retryAction = null;
            if (!this._stopped) {
                action();
            }
        }, delay);
    }

    _retryNow() {
        if (this._retryTimer !== null && this._retryAction) {
            const action = this._retryAction;
            this._clearRetry();
            action();
        }
    }

    _clearRetry() {
        if (this._retryTimer !== null) {
            clearTimeout(this._retryTimer);
            this._retryTimer = null;
        }
        this._retryAction = null;
    }

    /** Call `connect()` again after the back-off delay. */
    retryConnection() {
        if (!this.shouldReconnect || this._stopped) {
            return;
        }
        this._scheduleRetry(() => this.connect());
    }

    _watchOnline(on) {
        if (on && !this._onlineListening) {
            window.addEventListener('online', this._onlineListener);
            this._onlineListening = true;
        } else if (!on && this._onlineListening) {
            window.removeEventListener('online', this._onlineListener);
            this._onlineListening = false;
        }
    }

    _stop(state) {
        this._stopped = true;
        this._tokenAttempt += 1; // a getToken still running is ignored
        this._clearRetry();
        this._closeListener();
        this._watchOnline(false);
        this._setState(state);
    }

    /** Stop for good: close the listener, cancel retries and timers (`connect()` restarts). */
    close() {
        if (this._connectRequest) {
            this._connectRequest.abort();
            this._connectRequest = null;
        }
        this._stop(ConnectionState.CLOSED);
        this.connectionClosedCallback();
    }

    /** The 0.7 name of `close()`. */
    closeConnection() {
        this.close();
    }

    _setState(state) {
        if (this.state !== state) {
            this.state = state;
            this.connectionStateCallback(state, this.transport);
        }
    }

    _log(...args) {
        if (this.debug) {
            console.log('channelstream:', ...args);
        }
    }

    // ---------------------------------------------------------------- responses

    _handleConnect(request, data, wanted, recover) {
        if (this._stopped) {
            return;
        }
        this._currentBounceIv = 0;
        this.connectionId = data.conn_id;
        this.channels = data.channels || [];
        this._gapsSignalled.clear();
        const newEpoch = typeof data.epoch === 'string' && data.epoch !== this.epoch;
        if (newEpoch) {
            // a new server state: its seqs start anew
            this.epoch = data.epoch;
            this.lastSeq = 0;
            this._seenSeqs.clear();
            this._seenSeqOrder = [];
        }
        if (!recover && typeof data.seq === 'number' && data.seq > this.lastSeq) {
            // a first connect: its position, so that a recover before any frame arrived does
            // not replay what came before this connection
            this.lastSeq = data.seq;
        }
        this.channelsChangedCallback(this.channels);
        this.connectCallback(request, data);
        if (recover && data.recovered === false) {
            // missed frames are gone (another epoch, or no longer held): each channel reloads
            // from the page's position in this epoch (none in a new one)
            const position = newEpoch ? 0 : recover.seq;
            for (const channel of this.channels) {
                this._gapsSignalled.add(channel);
                this._handleGap(channel, position);
            }
        }
        const missing = (wanted || []).filter((channel) => this.channels.indexOf(channel) === -1);
        if (missing.length && this.subscribeUrl) {
            this.subscribe(missing); // a reconnect keeps the channels joined since connect()
        }
        this.startListening(request, data);
    }

    _handleConnectError(request, data) {
        this.connected = false;
        this.connectErrorCallback(request, data);
        this.retryConnection();
    }

    _handleListenError(request, data) {
        this.connected = false;
        this.retryConnection();
    }

    _handleDisconnect(request, data) {
        this.connected = false;
        this.disconnectCallback(request, data);
    }

    _handleDisconnectError(request, data) {
        this._log('disconnect failed', request, data);
    }

    _handleMessage(request, data) {
        this.messageCallback(request, data);
    }

    _handleMessageError(request, data) {
        this.messageErrorCallback(request, data);
    }

    _handleMessageEdit(request, data) {
        this.messageEditCallback(request, data);
    }

    _handleMessageEditError(request, data) {
        this.messageEditErrorCallback(request, data);
    }

    _handleMessageDelete(request, data) {
        this.messageDeleteCallback(request, data);
    }

    _handleMessageDeleteError(request, data) {
        this.messageDeleteErrorCallback(request, data);
    }

    _handleSubscribe(request, data) {
        this.channels = data.channels;
        this.channelsChangedCallback(this.channels);
        this.subscribeCallback(request, data);
    }

    _handleSubscribeError(request, data) {
        this.subscribeErrorCallback(request, data);
    }

    _handleUnsubscribe(request, data) {
        this.channels = data.channels;
        this.channelsChangedCallback(this.channels);
        this.unsubscribeCallback(request, data);
    }

    _handleUnsubscribeError(request, data) {
        this.unsubscribeErrorCallback(request, data);
    }

    _handleSetUserState(request, data) {
        this.setUserStateCallback(request, data);
    }

    _handleSetUserStateError(request, data) {
        this.setUserStateErrorCallback(request, data);
    }

    // ---------------------------------------------------------------- callbacks (override)

    /** Messages arrived (an array of message objects; heartbeats and gap frames are not
     *  passed on). */
    listenMessageCallback(messages) {
        this._log('listenMessageCallback', messages);
    }

    /** Messages of `channel` after position `seq` were lost for good (a `gap` frame, or a
     *  connect answer with `recovered: false`): reload the channel, e.g. from channelstream's
     *  `/history` through the web app. `channel` is null when direct messages were lost. */
    onGap(channel, seq) {
        this._log('onGap', channel, seq);
    }

    /** The application ended this connection (close 4003, `/user_disconnect`, e.g. a
     *  logout): the client has stopped for good; `reason` is the text it was given. */
    onDisconnected(reason) {
        this._log('onDisconnected', reason);
    }

    /** A listener opened (once per websocket, event stream or long-poll session). */
    listenOpenedCallback(request, data) {
        this._log('listenOpenedCallback', request, data);
    }

    /** A listener closed; `data` is `{code, transport}` (websocket close codes). */
    listenCloseCallback(request, data) {
        this._log('listenCloseCallback', request, data);
    }

    /** A listener failed (the error event, or the long poll's XMLHttpRequest). */
    listenErrorCallback(request, data) {
        this._log('listenErrorCallback', request, data);
    }

    /** Called before a listener opens (with the connect request and its answer). */
    beforeListeningCallback(request, data) {
        this._log('beforeListeningCallback', request, data);
    }

    /** The state changed: 'connecting', 'connected', 'reconnecting' or 'closed'. */
    connectionStateCallback(state, transport) {
        this._log('connectionStateCallback', state, transport);
    }

    /** Listening stopped for good (`close()`, `disconnect()`, or a final close). */
    connectionClosedCallback() {
        this._log('connectionClosedCallback');
    }

    channelsChangedCallback(channels) {
        this._log('channelsChangedCallback', channels);
    }

    connectCallback(request, data) {
        this._log('connectCallback', request, data);
    }

    connectErrorCallback(request, data) {
        this._log('connectErrorCallback', request, data);
    }

    disconnectCallback(request, data) {
        this._log('disconnectCallback', request, data);
    }

    messageCallback(request, data) {
        this._log('messageCallback', request, data);
    }

    messageErrorCallback(request, data) {
        this._log('messageErrorCallback', request, data);
    }

    messageEditCallback(request, data) {
        this._log('messageEditCallback', request, data);
    }

    messageEditErrorCallback(request, data) {
        this._log('messageEditErrorCallback', request, data);
    }

    messageDeleteCallback(request, data) {
        this._log('messageDeleteCallback', request, data);
    }

    messageDeleteErrorCallback(request, data) {
        this._log('messageDeleteErrorCallback', request, data);
    }

    subscribeCallback(request, data) {
        this._log('subscribeCallback', request, data);
    }

    subscribeErrorCallback(request, data) {
        this._log('subscribeErrorCallback', request, data);
    }

    unsubscribeCallback(request, data) {
        this._log('unsubscribeCallback', request, data);
    }

    unsubscribeErrorCallback(request, data) {
        this._log('unsubscribeErrorCallback', request, data);
    }

    setUserStateCallback(request, data) {
        this._log('setUserStateCallback', request, data);
    }

    setUserStateErrorCallback(request, data) {
        this._log('setUserStateErrorCallback', request, data);
    }
}

export default ChannelStreamConnection;
