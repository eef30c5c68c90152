-- sra-milter engagement events for Dovecot 2.3 (push_notification_lua).
--
-- Posts, as JSON lines with a bearer token, to sra-milter's events listener:
--   opened    when a message is marked \Seen (MessageRead, FlagsSet \Seen)
--   junk      when a message is moved or copied into the Junk mailbox, or
--             gets the $Junk keyword
--   not_junk  when it gets the $NotJunk keyword
--
-- Dovecot gives the Message-ID only when a message arrives (MessageNew,
-- MessageAppend); reads and flag changes carry mailbox and UID. The script
-- therefore remembers UID -> Message-ID per mailbox in a private mailbox
-- attribute (IMAP METADATA, needs mail_attribute_dict) when the message
-- arrives, and looks it up later.
--
-- Settings (plugin { } block):
--   sra_events_url         http://127.0.0.1:8895/v1/events
--   sra_events_token_file  /etc/dovecot/sra-milter.token (readable by the
--                          mail users' processes) or sra_events_token
--   sra_junk_mailbox       Junk (default)
-- Needs lua-socket (Debian: lua-socket). See README.md beside this file.

local http = require("socket.http")
local ltn12 = require("ltn12")

local MAIL_SEEN = 8           -- enum mail_flags: \Seen
local KEY_PREFIX = "/private/vendor/vendor.sra-milter/msgid/"

local function json_string(s)
  s = tostring(s or "")
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

local function read_token(user)
  local t = user:plugin_getenv("sra_events_token")
  if t ~= nil and t ~= "" then return t end
  local path = user:plugin_getenv("sra_events_token_file")
  if path == nil or path == "" then return nil end
  local f = io.open(path, "r")
  if f == nil then return nil end
  local token = f:read("*l")
  f:close()
  if token == nil then return nil end
  return (token:gsub("%s+$", ""))
end

-- UIDs arrive as Lua floats in some events and integers in others.
local function key(event)
  return KEY_PREFIX .. string.format("%.0f/%.0f", event.uid_validity, event.uid)
end

local function remember(ctx, event)
  if event.message_id == nil or event.message_id == "" then return end
  local ok, err = pcall(function()
    local mbox = ctx.user:mailbox(event.mailbox)
    mbox:open()
    mbox:metadata_set(key(event), event.message_id)
    mbox:close()
    mbox:free()
  end)
  if not ok then
    dovecot.i_error("sra-milter: cannot remember the Message-ID of " .. event.mailbox .. "/" .. tostring(event.uid) .. ": " .. tostring(err))
  end
end

local function recall(ctx, event)
  local id = nil
  local ok, err = pcall(function()
    local mbox = ctx.user:mailbox(event.mailbox)
    mbox:open()
    id = mbox:metadata_get(key(event))
    mbox:close()
    mbox:free()
  end)
  if not ok then
    dovecot.i_error("sra-milter: metadata lookup failed: " .. tostring(err))
  end
  return id
end

local function queue(ctx, kind, message_id)
  if message_id == nil or message_id == "" then return end
  table.insert(ctx.events, "{" ..
    '"event":' .. json_string(kind) ..
    ',"message_id":' .. json_string(message_id) ..
    ',"mailbox":' .. json_string(ctx.mailbox) ..
    ',"time":' .. json_string(os.date("!%Y-%m-%dT%H:%M:%SZ")) .. "}")
end

local function is_junk_mailbox(ctx, name)
  return name == ctx.junk or name:match("[./]" .. ctx.junk .. "$") ~= nil
end

function dovecot_lua_notify_begin_txn(user)
  local junk = user:plugin_getenv("sra_junk_mailbox")
  if junk == nil or junk == "" then junk = "Junk" end
  return {
    user = user,
    mailbox = user.username,
    url = user:plugin_getenv("sra_events_url"),
    junk = junk,
    events = {},
  }
end

-- Delivery (LMTP/LDA): remember the Message-ID.
function dovecot_lua_notify_event_message_new(ctx, event)
  remember(ctx, event)
end

-- APPEND, COPY and MOVE: remember it too; into Junk, it is a junk report.
function dovecot_lua_notify_event_message_append(ctx, event)
  remember(ctx, event)
  if is_junk_mailbox(ctx, event.mailbox) then
    queue(ctx, "junk", event.message_id)
  end
end

function dovecot_lua_notify_event_message_read(ctx, event)
  queue(ctx, "opened", recall(ctx, event))
end

-- flags is a bitmask in some Dovecot versions, a list of names in others.
local function has_seen(flags)
  if type(flags) == "number" then
    return (flags & MAIL_SEEN) ~= 0
  elseif type(flags) == "table" then
    for _, f in pairs(flags) do
      if f == "\\Seen" or f == MAIL_SEEN then return true end
    end
  end
  return false
end

function dovecot_lua_notify_event_flags_set(ctx, event)
  local id = nil
  if has_seen(event.flags) then
    id = id or recall(ctx, event)
    queue(ctx, "opened", id)
  end
  -- Dovecot 2.3.19 names the table "keywords" (the documentation:
  -- "keywords_set").
  for _, kw in pairs(event.keywords or event.keywords_set or {}) do
    if kw == "$Junk" or kw == "Junk" then
      id = id or recall(ctx, event)
      queue(ctx, "junk", id)
    elseif kw == "$NotJunk" or kw == "NonJunk" then
      id = id or recall(ctx, event)
      queue(ctx, "not_junk", id)
    end
  end
end

function dovecot_lua_notify_end_txn(ctx, success)
  if #ctx.events == 0 or ctx.url == nil or ctx.url == "" then return end
  local token = read_token(ctx.user)
  if token == nil then
    dovecot.i_error("sra-milter: no sra_events_token(_file); " .. #ctx.events .. " event(s) dropped")
    return
  end
  local body = table.concat(ctx.events, "\n") .. "\n"
  local response = {}
  local ok, code = http.request({
    method = "POST",
    url = ctx.url,
    source = ltn12.source.string(body),
    sink = ltn12.sink.table(response),
    headers = {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/x-ndjson",
      ["Content-Length"] = tostring(#body),
    },
  })
  if ok == nil then
    dovecot.i_error("sra-milter: cannot post events: " .. tostring(code))
  elseif code ~= 202 then
    dovecot.i_error("sra-milter: events refused (" .. tostring(code) .. "): " .. table.concat(response))
  end
end
