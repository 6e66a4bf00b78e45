"""Python client for the smtpool socket protocol, version 1.

Written from proto/PROTOCOL.md alone, with the standard library only, so the
integration tests can check the daemon against the document rather than
against the C client library.

High-level methods (logon, logoff, sendmail, get_response, set_security,
get_security) return a Reply; status() returns the pool rows and totals.
The low-level methods (send_frame, send_raw, read_reply) let tests send
broken frames. The client checks no limits itself, so a test can send
over-long fields and see what the daemon does with them.
"""

import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

MAGIC = b"SP"
VERSION = 1
HEADER_SIZE = 8

# Opcodes. Requests are below 0x80, replies 0x80 and above.
OP_LOGON = 0x01
OP_LOGOFF = 0x02
OP_SENDMAIL = 0x03
OP_PART = 0x04
OP_CHUNK = 0x05
OP_END = 0x06
OP_GET_RESPONSE = 0x07
OP_SET_SECURITY = 0x08
OP_GET_SECURITY = 0x09
OP_STATUS = 0x0a
OP_REPLY = 0x80
OP_ERROR = 0x81
OP_STATUS_ROW = 0x82

# Limits in bytes; a frame over any of them is a protocol error.
MAX_PAYLOAD = 128 * 1024
MAX_FIELDS = 16
MAX_CHUNK = 64 * 1024
MAX_CONNSTR = 1024
MAX_CREDENTIAL = 4095
MAX_HEADERS = 65536
MAX_FILENAME = 255
MAX_CONTENT_TYPE = 255
MAX_PART_KIND = 16
MAX_ENHANCED = 32
MAX_MESSAGE = 1024
MAX_SMTP_TEXT = 512
# SET_SECURITY values longer than these get the daemon's own status codes.
# The frame limits are 1024 bytes higher, and a longer field is a protocol
# error.
MAX_PROPERTIES = 255
MAX_PARAMETERS = 4095
MAX_PROPERTIES_FIELD = MAX_PROPERTIES + 1024
MAX_PARAMETERS_FIELD = MAX_PARAMETERS + 1024

# Status codes of the reply's status field. A positive SENDMAIL status is
# the number of refused recipients.
STATUS_OK = 0
STATUS_INVALID_ARGUMENT = -1
STATUS_INVALID_ADDRESS = -2
STATUS_ALREADY_LOGGED_ON = -3
STATUS_TOO_LARGE = -6
STATUS_NO_DRIVER = -7
STATUS_SECURITY = -8
STATUS_NETWORK = -9
STATUS_NO_RESPONSE = -10
STATUS_REJECTED = -11
STATUS_NO_RECIPIENT = -12
STATUS_QUOTA = -15
STATUS_NO_MEMORY = -18
STATUS_PROTOCOL_ERROR = -99

# SET_SECURITY status codes, smtpool's choice. They differ from the table
# above.
SECURITY_INVALID_PROPERTIES = -1
SECURITY_PARAMETERS_TOO_LONG = -2
SECURITY_LOCKED = -3
SECURITY_UNKNOWN_DRIVER = -4
SECURITY_BAD_ORDER = -5
SECURITY_TOO_MANY_DRIVERS = -6
SECURITY_NO_MEMORY = -18

# GET_SECURITY status codes besides 0.
GET_SECURITY_NO_SUCH_DRIVER = -1
GET_SECURITY_INVALID_KEYWORD = -2
GET_SECURITY_NO_MEMORY = -6

SOCKET_NAME = "smtpool.sock"

FieldValue = Union[bytes, bytearray, memoryview, str]
Attachment = Tuple[str, bytes, str]


class ConnectionClosed(Exception):
    """The daemon closed the connection where a reply was expected."""


class ProtocolError(Exception):
    """The daemon sent a frame that does not follow the protocol."""


@dataclass(frozen=True)
class StatusRow:
    """One STATUS_ROW frame: the counts of one pool key."""

    connection: str
    drivers: str  # "UStartTLSSMTP/MAND+UAuthLoginSMTP/MAND", "" for none
    idle: int
    busy: int
    opening: int
    waiting: int
    sent: int
    errors: int
    oldest_age: int  # seconds


@dataclass(frozen=True)
class Reply:
    """One REPLY or ERROR frame from the daemon.

    rows contains the STATUS_ROW frames that came before it, which only
    the reply to STATUS has.
    """

    status: int
    smtp_code: int
    enhanced: str
    message: str
    extras: List[str] = field(default_factory=list)
    op: int = OP_REPLY
    rows: List[StatusRow] = field(default_factory=list)

    @property
    def is_error(self) -> bool:
        """True for an ERROR frame, after which the daemon hangs up."""
        return self.op == OP_ERROR


def i32(value: int) -> bytes:
    """Encode an int32 field: 4 bytes, big-endian two's complement."""
    return struct.pack(">i", value)


def i64(value: int) -> bytes:
    """Encode an int64 field: 8 bytes, big-endian two's complement."""
    return struct.pack(">q", value)


def _field_bytes(value: FieldValue) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def encode_frame(op: int, fields: Iterable[FieldValue] = (),
                 version: int = VERSION, magic: bytes = MAGIC) -> bytes:
    """Build one frame; str fields are encoded as UTF-8.

    No limit is checked, and version and magic may be set to wrong values
    on purpose.
    """
    payload = b"".join(struct.pack(">I", len(data)) + data
                       for data in map(_field_bytes, fields))
    return (bytes(magic) + bytes([version & 0xFF, op & 0xFF])
            + struct.pack(">I", len(payload)) + payload)


def decode_fields(payload: bytes) -> List[bytes]:
    """Split a frame payload into its fields, or raise ProtocolError."""
    fields = []
    offset = 0
    while offset < len(payload):
        if len(fields) == MAX_FIELDS:
            raise ProtocolError("frame has more than %d fields" % MAX_FIELDS)
        if len(payload) - offset < 4:
            raise ProtocolError("payload ends inside the length of field %d"
                                % len(fields))
        (length,) = struct.unpack_from(">I", payload, offset)
        offset += 4
        if length > len(payload) - offset:
            raise ProtocolError("field %d declares %d bytes but only %d remain"
                                % (len(fields), length, len(payload) - offset))
        fields.append(payload[offset:offset + length])
        offset += length
    return fields


def decode_reply(op: int, payload: bytes) -> Reply:
    """Decode the payload of a REPLY or ERROR frame."""
    if op not in (OP_REPLY, OP_ERROR):
        raise ProtocolError("expected REPLY or ERROR, got opcode 0x%02x" % op)
    fields = decode_fields(payload)
    if len(fields) < 4:
        raise ProtocolError("reply has %d fields, expected at least 4"
                            % len(fields))
    if len(fields[0]) != 4 or len(fields[1]) != 4:
        raise ProtocolError("reply status or SMTP code is not 4 bytes")

    def text(data: bytes) -> str:
        return data.decode("utf-8", errors="replace")

    return Reply(status=struct.unpack(">i", fields[0])[0],
                 smtp_code=struct.unpack(">i", fields[1])[0],
                 enhanced=text(fields[2]),
                 message=text(fields[3]),
                 extras=[text(extra) for extra in fields[4:]],
                 op=op)


def decode_status_row(payload: bytes) -> StatusRow:
    """Decode the payload of a STATUS_ROW frame: 2 texts, 4 int32 counts
    and 3 int64 counts."""
    fields = decode_fields(payload)
    if len(fields) != 9:
        raise ProtocolError("STATUS_ROW has %d fields, expected 9"
                            % len(fields))
    sizes = [4, 4, 4, 4, 8, 8, 8]
    for index, size in enumerate(sizes, start=2):
        if len(fields[index]) != size:
            raise ProtocolError("STATUS_ROW field %d is %d bytes, expected "
                                "%d" % (index, len(fields[index]), size))
    counts = [struct.unpack(">i" if size == 4 else ">q", fields[index])[0]
              for index, size in enumerate(sizes, start=2)]
    return StatusRow(fields[0].decode("utf-8", errors="replace"),
                     fields[1].decode("utf-8", errors="replace"), *counts)


def parse_totals(extras: Sequence[str]) -> dict:
    """Turn the name=value extras of the STATUS reply into a dict; values
    made of digits become int, others stay str."""
    totals = {}
    for extra in extras:
        name, sep, value = extra.partition("=")
        if not sep:
            raise ProtocolError("STATUS total %r has no '='" % extra)
        totals[name] = int(value) if value.isdigit() else value
    return totals


def default_socket_path() -> str:
    """Return the daemon's default socket path, or raise LookupError.

    $RUNTIME_DIRECTORY/smtpool.sock (first entry of a colon-separated list),
    else /run/smtpool/smtpool.sock for root, else
    $XDG_RUNTIME_DIR/smtpool.sock when that is an absolute path.
    """
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return os.path.join(runtime, SOCKET_NAME)
    if os.geteuid() == 0:
        return "/run/smtpool/" + SOCKET_NAME
    xdg = os.environ.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/"):
        return os.path.join(xdg, SOCKET_NAME)
    raise LookupError("no default smtpool socket: RUNTIME_DIRECTORY and "
                      "XDG_RUNTIME_DIR are unset; set SMTPOOL_SOCKET")


def socket_path() -> str:
    """Return $SMTPOOL_SOCKET when set, else the default socket path."""
    return os.environ.get("SMTPOOL_SOCKET") or default_socket_path()


def _chunk_frames(data: bytes, chunk_size: int) -> Iterator[bytes]:
    view = memoryview(data)
    for offset in range(0, len(data), chunk_size):
        yield encode_frame(OP_CHUNK, [view[offset:offset + chunk_size]])


def _sendmail_frames(server: str, headers: str,
                     text: Union[str, bytes, None],
                     attachments: Iterable[Attachment], maxsize: int,
                     chunk_size: int) -> Iterator[bytes]:
    """Yield the frames of one SENDMAIL, one at a time to bound memory."""
    yield encode_frame(OP_SENDMAIL, [server, headers, i64(maxsize)])
    if text is not None:
        yield encode_frame(OP_PART, ["text", "", ""])
        yield from _chunk_frames(_field_bytes(text), chunk_size)
    for filename, content, content_type in attachments:
        yield encode_frame(OP_PART, ["attachment", filename, content_type])
        yield from _chunk_frames(bytes(content), chunk_size)
    yield encode_frame(OP_END)


class Client:
    """One connection to smtpoold, which is one session."""

    def __init__(self, path: Optional[str] = None,
                 timeout: Optional[float] = None):
        """Connect to the socket at path (default: socket_path()).

        timeout, in seconds, bounds every socket operation; None waits
        forever.
        """
        self.path = path if path is not None else socket_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(self.path)
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        """Close the connection, which ends the session."""
        self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # Low level -------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are."""
        flags = getattr(socket, "MSG_NOSIGNAL", 0)
        self.sock.sendall(data, flags)

    def send_frame(self, op: int, fields: Sequence[FieldValue] = (),
                   version: int = VERSION, magic: bytes = MAGIC) -> None:
        """Encode and send one frame (see encode_frame)."""
        self.send_raw(encode_frame(op, fields, version, magic))

    def _read_exactly(self, count: int, what: str) -> bytes:
        data = bytearray()
        while len(data) < count:
            try:
                piece = self.sock.recv(count - len(data))
            except ConnectionResetError as exc:
                raise ConnectionClosed("connection reset while reading %s"
                                       % what) from exc
            if not piece:
                raise ConnectionClosed(
                    "daemon closed the connection after %d of %d bytes of %s"
                    % (len(data), count, what))
            data += piece
        return bytes(data)

    def read_frame(self) -> Tuple[int, bytes]:
        """Read one frame of any opcode; return (opcode, payload).

        Raises ConnectionClosed on end-of-file and ProtocolError on a bad
        header.
        """
        header = self._read_exactly(HEADER_SIZE, "a reply header")
        if header[0:2] != MAGIC:
            raise ProtocolError("bad magic %r in reply" % header[0:2])
        if header[2] != VERSION:
            raise ProtocolError("reply has version %d, expected %d"
                                % (header[2], VERSION))
        (length,) = struct.unpack_from(">I", header, 4)
        if length > MAX_PAYLOAD:
            raise ProtocolError("reply payload of %d bytes is over %d"
                                % (length, MAX_PAYLOAD))
        payload = self._read_exactly(length, "a reply payload")
        return header[3], payload

    def read_reply(self, max_rows: int = 100000) -> Reply:
        """Read one REPLY or ERROR frame.

        STATUS_ROW frames before it are decoded into the reply's rows, at
        most max_rows of them. Raises ConnectionClosed on end-of-file and
        ProtocolError on a frame that breaks the protocol.
        """
        rows = []
        while True:
            op, payload = self.read_frame()
            if op != OP_STATUS_ROW:
                break
            if len(rows) == max_rows:
                raise ProtocolError("more than %d STATUS_ROW frames"
                                    % max_rows)
            rows.append(decode_status_row(payload))
        reply = decode_reply(op, payload)
        if rows:
            reply = Reply(reply.status, reply.smtp_code, reply.enhanced,
                          reply.message, reply.extras, reply.op, rows)
        return reply

    def request(self, op: int, fields: Sequence[FieldValue] = ()) -> Reply:
        """Send one request frame and read its reply."""
        self.send_frame(op, fields)
        return self.read_reply()

    # UPOPMAIL operations ---------------------------------------------

    def logon(self, conn: str, user: str = "", password: str = "") -> Reply:
        """LogonSMTP: log this session on to the server conn."""
        return self.request(OP_LOGON, [conn, user, password])

    def logoff(self) -> Reply:
        """LogoffSMTP: end this session's logon."""
        return self.request(OP_LOGOFF)

    def get_response(self) -> Reply:
        """GetSMTPResponse: the server text is in extras[0]."""
        return self.request(OP_GET_RESPONSE)

    def set_security(self, properties: str, parameters: str = "") -> Reply:
        """SetSecurity: append a driver, or clear the context with "SMTP=".

        properties is "SMTP=ENTRYPOINT{;USE=MAND|OPT}"; parameters are
        key=value items separated by ';' (";;" is a literal ';').
        """
        return self.request(OP_SET_SECURITY, [properties, parameters])

    def get_security(self, index: int, properties: str = "SMTP=") -> Reply:
        """GetSecurity: describe driver number index (1-based).

        On status 0, extras[0] is the driver's properties
        ("SMTP=UAuthLoginSMTP;USE=MAND") and extras[1] its runtime
        information ("INUSE=TRUE" or "INUSE=FALSE").
        """
        return self.request(OP_GET_SECURITY, [i32(index), properties])

    def status(self) -> Tuple[List[StatusRow], dict]:
        """STATUS: return (rows, totals) of the daemon's pool.

        totals maps each name=value extra of the reply to its value
        (sessions, keys, ..., uptime as int, version as str). Raises
        ProtocolError when the reply is not status 0.
        """
        reply = self.request(OP_STATUS)
        if reply.status != STATUS_OK or reply.is_error:
            raise ProtocolError("STATUS failed: %r" % (reply,))
        return reply.rows, parse_totals(reply.extras)

    def sendmail(self, server: str, headers: str,
                 text: Union[str, bytes, None],
                 attachments: Iterable[Attachment] = (),
                 maxsize: int = 0, chunk_size: int = MAX_CHUNK) -> Reply:
        """SendMail: send SENDMAIL, the parts and END, then read the reply.

        text (str is sent as UTF-8) becomes the text part; None sends no
        text part. attachments are (file name, content, content type)
        tuples, and an empty content type lets the daemon guess it. Content
        is split into CHUNK frames of chunk_size bytes, which must be at
        most MAX_CHUNK for valid frames.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive, got %d"
                             % chunk_size)
        frames = _sendmail_frames(server, headers, text, attachments,
                                  maxsize, chunk_size)
        try:
            for frame in frames:
                self.send_raw(frame)
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The daemon hangs up after an ERROR frame, which may be
            # waiting in the receive buffer; return it if it is there.
            try:
                return self.read_reply()
            except ConnectionClosed:
                raise ConnectionClosed(
                    "daemon closed the connection during SENDMAIL") from exc
        return self.read_reply()
