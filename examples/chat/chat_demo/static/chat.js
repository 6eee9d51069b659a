// The chat page: channelstream's browser client listens, this web app (/demo/...) acts.
const config = JSON.parse(document.getElementById('chat-config').textContent);
const me = config.username;
const base = config.channelstreamUrl.replace(/\/$/, '');
const {ChannelStreamConnection} = await import(base + '/static/channelstream.js');

const joined = new Set();
const members = new Map(); // channel -> Set of user names
const states = new Map(); // user -> public state {status, color}
const messages = new Map(); // channel -> Map uuid -> message
const directMessages = new Map(); // uuid -> message
const dmRecipients = new Map(); // uuid -> pm_users of the direct messages sent from here
// Channels being reloaded after a gap: channel -> {token, frames} (their frames wait meanwhile)
const reloading = new Map();
let current = config.channels[0];
// The message being edited ({uuid, item}): its list item, with the draft, survives re-renders.
let editing = null;

const $ = (selector) => document.querySelector(selector);

function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
        if (key === 'class') {
            node.className = value;
        } else if (key.startsWith('data-')) {
            node.setAttribute(key, value);
        } else {
            node[key] = value;
        }
    }
    node.append(...children);
    return node;
}

// ------------------------------------------------------------------ the connection

const connection = new ChannelStreamConnection();
connection.username = me;
connection.channels = [current];
connection.connectUrl = '/demo/connect';
connection.subscribeUrl = '/demo/subscribe';
connection.unsubscribeUrl = '/demo/unsubscribe';
connection.userStateUrl = '/demo/user_state';
connection.messageUrl = '/demo/message';
connection.messageEditUrl = '/demo/message';
connection.messageDeleteUrl = '/demo/message';
connection.websocketUrl = base.replace(/^http/, 'ws') + '/ws';
connection.longPollUrl = base + '/listen';
connection.disconnectUrl = base + '/disconnect';
// tests (and curious people) can tune the client before it connects
Object.assign(connection, window.CHAT_DEMO_OPTIONS || {});
window.chatConnection = connection;

connection.connectionStateCallback = (state, transport) => {
    const indicator = $('#connection');
    indicator.dataset.state = state;
    indicator.dataset.transport = transport || '';
    indicator.textContent = state === 'connected' ? `connected (${transport})` : state;
};

connection.channelsChangedCallback = (channels) => {
    joined.clear();
    for (const channel of channels) {
        joined.add(channel);
    }
    renderChannels();
};

connection.connectCallback = (request, data) => {
    applyChannelsInfo(data.channels_info);
    if (data.state && data.state.status) {
        $('#status').value = data.state.status;
    }
};

connection.subscribeCallback = (request, data) => applyChannelsInfo(data.channels_info);

connection.unsubscribeCallback = (request, data) => {
    for (const channel of data.unsubscribed_from || []) {
        members.delete(channel);
    }
    renderPresence();
};

connection.messageCallback = (request, data) => {
    if (data && data.pm_users && data.pm_users.length) {
        dmRecipients.set(data.uuid, data.pm_users);
        renderDirectMessages();
    }
};

connection.listenMessageCallback = (frames) => {
    for (const frame of frames) {
        const isMessage = frame.type === 'message' || String(frame.type).startsWith('message:');
        const pending = isMessage && frame.channel ? reloading.get(frame.channel) : null;
        if (pending) {
            pending.frames.push(frame); // applied on top of the reloaded list
        } else {
            handleFrame(frame);
        }
    }
    renderMessages();
    renderDirectMessages();
    renderPresence();
};

// Messages of `channel` were lost (channelstream could not replay them all): show the
// channel's history instead of the list we had. Frames arriving meanwhile wait and are then
// applied on top, in order, so nothing is missing or doubled. Direct messages (channel null)
// are in no channel's history: the page says that some may be missing.
connection.onGap = (channel) => {
    if (channel === null || channel === undefined) {
        $('#dm-gap').hidden = false;
    } else {
        reloadChannel(channel, 0);
    }
};

function reloadChannel(channel, attempt) {
    const pending = reloading.get(channel) || {frames: []};
    const token = {};
    pending.token = token;
    reloading.set(channel, pending);
    fetch('/demo/history', {
        method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({channel: channel}),
    }).then((response) => {
        if (!response.ok) {
            throw new Error('history: ' + response.status);
        }
        return response.json();
    }).then((history) => {
        if (pending.token !== token) {
            return; // a later gap asked again: its answer wins
        }
        reloading.delete(channel);
        const stored = new Map();
        for (const entry of history.messages || []) {
            stored.set(entry.uuid, entry);
        }
        messages.set(channel, stored);
        for (const frame of pending.frames) {
            handleFrame(frame);
        }
        renderMessages();
    }).catch((error) => {
        if (pending.token !== token) {
            return;
        }
        if (attempt < 5) {
            console.warn('reloading #' + channel + ' failed, retrying:', error);
            setTimeout(() => reloadChannel(channel, attempt + 1), 1000 * 2 ** attempt);
            return;
        }
        console.warn('reloading #' + channel + ' failed:', error);
        reloading.delete(channel);
        for (const frame of pending.frames) {
            handleFrame(frame);
        }
        renderMessages();
    });
}

function applyChannelsInfo(info) {
    if (!info) {
        return;
    }
    for (const user of info.users || []) {
        states.set(user.user, user.state || {});
    }
    for (const [name, channel] of Object.entries(info.channels || {})) {
        members.set(name, new Set(channel.users || []));
        const stored = channelMessages(name);
        for (const entry of channel.history || []) {
            stored.set(entry.uuid, entry);
        }
    }
    renderMessages();
    renderPresence();
}

function channelMessages(channel) {
    if (!messages.has(channel)) {
        messages.set(channel, new Map());
    }
    return messages.get(channel);
}

function handleFrame(frame) {
    const store = frame.channel ? channelMessages(frame.channel) : directMessages;
    if (frame.type === 'message') {
        store.set(frame.uuid, frame);
    } else if (frame.type === 'message:edit') {
        const stored = store.get(frame.uuid);
        if (stored) {
            Object.assign(stored, {message: frame.message, edited: frame.edited});
        }
    } else if (frame.type === 'message:delete') {
        store.delete(frame.uuid);
    } else if (frame.type === 'presence') {
        const present = members.get(frame.channel) || new Set();
        members.set(frame.channel, present);
        if (frame.message.action === 'joined') {
            present.add(frame.user);
            states.set(frame.user, frame.state || states.get(frame.user) || {});
        } else {
            present.delete(frame.user);
        }
    } else if (frame.type === 'user_state_change') {
        states.set(frame.user, frame.message.state || {});
    }
}

// ------------------------------------------------------------------ rendering

function renderChannels() {
    const list = $('#channels');
    list.replaceChildren();
    const names = [...new Set([...config.channels, ...joined])];
    for (const name of names) {
        const isJoined = joined.has(name);
        const open = element('button', {class: 'open', type: 'button', textContent: '#' + name});
        open.addEventListener('click', () => {
            current = name;
            renderChannels();
            renderMessages();
            renderPresence();
        });
        const toggle = element('button', {
            class: isJoined ? 'leave' : 'join',
            type: 'button',
            textContent: isJoined ? 'Leave' : 'Join',
        });
        toggle.addEventListener('click', () => {
            if (isJoined) {
                connection.unsubscribe([name]);
            } else {
                connection.subscribe(connection.calculateSubscribe([name]));
            }
        });
        const classes = [isJoined ? 'joined' : '', name === current ? 'current' : ''];
        list.append(element('li', {'data-channel': name, class: classes.join(' ').trim()}, open, toggle));
    }
    $('#current-channel').textContent = current;
    $('#message-text').disabled = !joined.has(current);
}

// Channelstream's order (seq) when both have one, else their time.
function byTime(a, b) {
    if (typeof a.seq === 'number' && typeof b.seq === 'number') {
        return a.seq - b.seq;
    }
    return String(a.timestamp).localeCompare(String(b.timestamp));
}

function messageItem(message, routing) {
    const text = message.message && typeof message.message.text === 'string' ? message.message.text : '';
    const item = element(
        'li',
        {class: 'message', 'data-uuid': message.uuid, 'data-user': message.user},
        element('span', {class: 'author', textContent: message.user}),
        element('span', {class: 'text', textContent: text}),
    );
    if (message.edited) {
        item.append(element('span', {class: 'edited', textContent: '(edited)'}));
    }
    if (message.user === me) {
        const edit = element('button', {class: 'edit', type: 'button', textContent: 'Edit'});
        const remove = element('button', {class: 'delete', type: 'button', textContent: 'Delete'});
        edit.addEventListener('click', () => startEditing(item, text, routing));
        remove.addEventListener('click', () => connection.delete({uuid: message.uuid, ...routing}));
        item.prepend(element('span', {class: 'actions'}, edit, remove));
    }
    return item;
}

function startEditing(item, text, routing) {
    if (editing && editing.item === item) {
        editing.input.focus(); // already open: a second click changes nothing
        return;
    }
    if (editing) {
        // one edit at a time: close the other one (the lists render anew), then open this one
        const uuid = item.dataset.uuid;
        stopEditing();
        const fresh = [...document.querySelectorAll('li.message')].find((li) => li.dataset.uuid === uuid);
        fresh?.querySelector('.edit')?.click();
        return;
    }
    const input = element('input', {class: 'edit-text', value: text, maxLength: 2000});
    const save = element('button', {class: 'save', type: 'button', textContent: 'Save'});
    const cancel = element('button', {class: 'cancel', type: 'button', textContent: 'Cancel'});
    const finish = () => {
        // unchanged (or emptied): nothing to send, so the message is not marked edited
        if (input.value.trim() && input.value !== text) {
            connection.edit({uuid: item.dataset.uuid, ...routing, message: {text: input.value}});
        }
        stopEditing(); // the edit itself comes back from channelstream
    };
    save.addEventListener('click', finish);
    cancel.addEventListener('click', stopEditing);
    input.addEventListener('keydown', (event) => {
        if (event.key === 'Enter') {
            finish();
        } else if (event.key === 'Escape') {
            stopEditing();
        }
    });
    editing = {uuid: item.dataset.uuid, item, input};
    item.classList.add('editing');
    item.querySelector('.text').replaceWith(input);
    item.append(save, cancel);
    input.focus();
}

function stopEditing() {
    editing = null;
    renderMessages();
    renderDirectMessages();
}

// The list's items for `messages`, with the item being edited kept as it is (draft, caret
// and focus included) so that messages arriving meanwhile still show.
function showItems(list, messages, makeItem) {
    const kept = editing && messages.some((message) => message.uuid === editing.uuid) ? editing : null;
    const focused = kept && document.activeElement === kept.input;
    const [start, end] = focused ? [kept.input.selectionStart, kept.input.selectionEnd] : [0, 0];
    list.replaceChildren(...messages.map((message) => (kept && message.uuid === kept.uuid ? kept.item : makeItem(message))));
    if (focused) {
        kept.input.focus();
        kept.input.setSelectionRange(start, end);
    }
    if (editing && !editing.item.isConnected) {
        editing = null; // its message was deleted, or the page shows another channel
    }
}

function renderMessages() {
    const list = $('#messages');
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    const stored = [...channelMessages(current).values()].sort(byTime);
    showItems(list, stored, (message) => messageItem(message, {channel: current}));
    if (atBottom || !editing) {
        list.scrollTop = list.scrollHeight;
    }
}

function renderDirectMessages() {
    const list = $('#direct-messages');
    const sorted = [...directMessages.values()].sort(byTime);
    showItems(list, sorted, (message) => {
        const pmUsers = dmRecipients.get(message.uuid) || [message.user, me];
        const others = pmUsers.filter((user) => user !== me);
        const item = messageItem(message, {pm_users: pmUsers});
        const peer = message.user === me ? 'to ' + (others.join(', ') || me) : 'from ' + message.user;
        item.querySelector('.author').textContent = message.user === me ? 'you' : message.user;
        item.insertBefore(element('span', {class: 'peer', textContent: peer + ': '}), item.querySelector('.text'));
        item.dataset.peer = message.user === me ? others.join(',') : message.user;
        return item;
    });
}

function renderPresence() {
    const list = $('#presence');
    const present = [...(members.get(current) || [])].sort();
    list.replaceChildren(...present.map((user) => {
        const state = states.get(user) || {};
        const status = state.status || 'unknown';
        const dot = element('span', {class: 'dot'});
        if (state.color) {
            dot.style.outline = `2px solid ${state.color}`;
        }
        return element(
            'li',
            {class: `presence-user status-${status}`, 'data-user': user, 'data-status': status},
            dot,
            element('span', {class: 'name', textContent: user === me ? `${user} (you)` : user}),
            element('span', {class: 'status', textContent: status}),
        );
    }));
    const everyone = new Set();
    for (const users of members.values()) {
        for (const user of users) {
            everyone.add(user);
        }
    }
    everyone.delete(me);
    const select = $('#dm-to');
    const chosen = select.value;
    select.replaceChildren(...[...everyone].sort().map((user) => element('option', {value: user, textContent: user})));
    if (everyone.has(chosen)) {
        select.value = chosen;
    }
}

// ------------------------------------------------------------------ the page's forms

$('#me').textContent = me;
$('#status').replaceChildren(...config.statuses.map((status) => element('option', {value: status, textContent: status})));
$('#status').addEventListener('change', (event) => connection.updateUserState({status: event.target.value}));

$('#message-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('#message-text');
    if (input.value.trim()) {
        connection.message({channel: current, message: {text: input.value}});
        input.value = '';
    }
});

$('#dm-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('#dm-text');
    const to = $('#dm-to').value;
    if (to && input.value.trim()) {
        connection.message({to: to, message: {text: input.value}});
        input.value = '';
    }
});

$('#join-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = $('#new-channel').value.trim().toLowerCase();
    if (name) {
        current = name;
        connection.subscribe(connection.calculateSubscribe([name]));
        $('#new-channel').value = '';
        renderChannels();
        renderMessages();
    }
});

$('#sign-out').addEventListener('submit', (event) => {
    event.preventDefault();
    const form = event.target;
    const leave = () => form.submit();
    connection.disconnectCallback = leave;
    setTimeout(leave, 1000); // sign out even if channelstream does not answer
    connection.disconnect();
});

renderChannels();
connection.connect();
