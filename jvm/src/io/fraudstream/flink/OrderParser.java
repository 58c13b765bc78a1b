package io.fraudstream.flink;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.DateTimeException;
import java.time.LocalDate;
import java.util.HashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonProcessingException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.StreamReadConstraints;

/**
 * Turns one raw record into an order or a (reason, detail) rejection, by the event contract
 * written down in docs/event-contract.md. The Python admission
 * ({@code fraudstream.events.parse.parse_record}) implements the same spec; the parity test
 * (tests/flink/test_java_parser.py) checks that both reach the same verdicts, reasons and
 * fields. Details are for people and may be worded differently.
 *
 * <p>Pure and static: no state, safe from any thread.
 */
public final class OrderParser {

    static final long MAX_EVENT_TIME = 253_402_300_799_999L; // 9999-12-31T23:59:59.999Z
    static final int MAX_ID_CHARS = 256;
    private static final String[] ID_FIELDS = {"user_id", "device_id", "restaurant_id", "city", "payment_method"};
    /** Unicode's White_Space property: what makes a record or an id blank. */
    private static final String WHITESPACE =
            "\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                    + "\u200a\u2028\u2029\u202f\u205f\u3000";
    /** RFC 3339 date-time; the zone is optional here only so that a missing one gets its own detail. */
    private static final Pattern RFC3339 = Pattern.compile(
            "([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\\.([0-9]+))?"
                    + "(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?");

    private static final JsonFactory JSON = JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder()
                    .maxNestingDepth(1024) // the spec's limit (orjson's)
                    // The record size limit bounds these.
                    .maxNumberLength(Integer.MAX_VALUE)
                    .maxStringLength(Integer.MAX_VALUE)
                    .maxNameLength(Integer.MAX_VALUE)
                    .build())
            // Keys come from untrusted input: don't intern them into the JVM's string pool.
            .disable(JsonFactory.Feature.INTERN_FIELD_NAMES)
            .build();

    /** Stand-ins for the top-level fields' values that are arrays or objects. */
    private static final Object ARRAY = new Object();
    private static final Object OBJECT = new Object();

    private OrderParser() {}

    /** A JSON number: whether it was written as an integer, its text, and its nearest double. */
    private static final class Num {
        final boolean integer;
        final String text;
        final double value;

        Num(boolean integer, String text, double value) {
            this.integer = integer;
            this.text = text;
            this.value = value;
        }
    }

    /** One parsed record: the order's fields when {@link #isValid()}, else reason and detail. */
    public static final class Parsed {
        private final String reason;
        private final String detail;
        private final String[] ids; // transaction_id, user_id, device_id, restaurant_id, city, payment_method
        private final double amount;
        private final long eventTime;
        private final String behavior;

        private Parsed(String reason, String detail, String[] ids, double amount, long eventTime, String behavior) {
            this.reason = reason;
            this.detail = detail;
            this.ids = ids;
            this.amount = amount;
            this.eventTime = eventTime;
            this.behavior = behavior;
        }

        private static Parsed rejected(String reason, String detail) {
            return new Parsed(reason, detail, new String[6], 0.0, 0L, null);
        }

        public boolean isValid() {
            return reason == null;
        }

        /** The dead-letter reason code, or null for a valid order. */
        public String getReason() {
            return reason;
        }

        public String getDetail() {
            return detail;
        }

        public String getTransactionId() {
            return ids[0];
        }

        public String getUserId() {
            return ids[1];
        }

        public String getDeviceId() {
            return ids[2];
        }

        public String getRestaurantId() {
            return ids[3];
        }

        /** The amount, or null when the record was rejected. */
        public Double getAmount() {
            return isValid() ? amount : null;
        }

        public String getCity() {
            return ids[4];
        }

        public String getPaymentMethod() {
            return ids[5];
        }

        /** Epoch milliseconds (UTC), or null when the record was rejected. */
        public Long getEventTime() {
            return isValid() ? eventTime : null;
        }

        /** The generator's ground-truth label; null when absent (it is optional). */
        public String getBehavior() {
            return behavior;
        }

        /** The same value as {@link #getEventTime()}, unboxed, for valid orders. */
        long eventTimeMs() {
            return eventTime;
        }

        double amountValue() {
            return amount;
        }

        @Override
        public String toString() {
            return isValid()
                    ? "Order(" + String.join(", ", ids) + ", " + amount + ", " + eventTime + ", " + behavior + ")"
                    : "Rejected(" + reason + ": " + detail + ")";
        }
    }

    /** A rejection on its way out; no stack trace, it is control flow. */
    private static final class Rejected extends Exception {
        private static final long serialVersionUID = 1L;
        final String reason;

        Rejected(String reason, String detail) {
            super(detail, null, false, false);
            this.reason = reason;
        }
    }

    /**
     * Parses and validates one record. Returns null for a blank record (skipped, not an
     * error) and for a Kafka tombstone (no record at all); else a {@link Parsed} that is
     * either valid or rejected.
     */
    public static Parsed parse(byte[] raw, int maxRecordBytes) {
        if (raw == null) {
            return null;
        }
        try {
            // Size first, on the bytes as received: a huge record is never decoded.
            if (raw.length > maxRecordBytes) {
                throw new Rejected("too_large", "record is " + raw.length + " bytes, limit is " + maxRecordBytes);
            }
            String text = decodeUtf8(raw);
            if (isBlank(text)) {
                return null;
            }
            return toOrder(readJson(text));
        } catch (Rejected r) {
            return Parsed.rejected(r.reason, r.getMessage());
        }
    }

    /** The record as a dead letter keeps it: UTF-8 with U+FFFD for each bad sequence, cut to {@code maxChars}. */
    public static String deadLetterRaw(byte[] raw, int maxChars) {
        return truncate(raw == null ? "" : new String(raw, StandardCharsets.UTF_8), maxChars);
    }

    /** The first {@code maxChars} code points and a note of how many were cut. */
    static String truncate(String text, int maxChars) {
        if (text.length() <= maxChars) {
            return text; // UTF-16 units >= code points
        }
        int points = text.codePointCount(0, text.length());
        if (points <= maxChars) {
            return text;
        }
        int cut = text.offsetByCodePoints(0, Math.max(maxChars, 0));
        return text.substring(0, cut) + "...[truncated " + (points - maxChars) + " chars]";
    }

    /** Strict UTF-8, after one leading byte-order mark (skipped). */
    private static String decodeUtf8(byte[] raw) throws Rejected {
        int start = raw.length >= 3 && raw[0] == (byte) 0xEF && raw[1] == (byte) 0xBB && raw[2] == (byte) 0xBF ? 3 : 0;
        // The fast, lenient decoder first: bad bytes would become U+FFFD. Only when there is
        // one (which the record may also just contain) does the strict decoder decide.
        String text = new String(raw, start, raw.length - start, StandardCharsets.UTF_8);
        if (text.indexOf('\uFFFD') < 0) {
            return text;
        }
        ByteBuffer in = ByteBuffer.wrap(raw, start, raw.length - start);
        CharBuffer out = CharBuffer.allocate(raw.length);
        CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
        CoderResult result = decoder.decode(in, out, true);
        if (!result.isError()) {
            result = decoder.flush(out);
        }
        if (result.isError()) {
            throw new Rejected("undecodable", "not valid UTF-8 at byte " + in.position());
        }
        return out.flip().toString();
    }

    private static boolean isBlank(String s) {
        for (int k = 0; k < s.length(); k++) {
            if (WHITESPACE.indexOf(s.charAt(k)) < 0) {
                return false;
            }
        }
        return true;
    }

    private static String jsonType(Object v) {
        if (v == null) {
            return "null";
        }
        if (v instanceof String) {
            return "string";
        }
        if (v instanceof Num) {
            return "number";
        }
        if (v instanceof Boolean) {
            return "boolean";
        }
        return v == ARRAY ? "array" : "object";
    }

    // ---------------------------------------------------------------- JSON

    private static Rejected invalidJson(String message) {
        return new Rejected("invalid_json", message);
    }

    /** The document: a map of the top-level object's fields (the last of duplicates wins), or another value. */
    private static Object readJson(String text) throws Rejected {
        try (JsonParser p = JSON.createParser(text)) {
            JsonToken t = p.nextToken();
            if (t == null) {
                throw invalidJson("expected a JSON value");
            }
            Object root;
            if (t == JsonToken.START_OBJECT) {
                Map<String, Object> fields = new HashMap<>();
                while (p.nextToken() == JsonToken.FIELD_NAME) {
                    String name = checked(p.currentName());
                    fields.put(name, value(p, p.nextToken()));
                }
                root = fields;
            } else {
                root = value(p, t);
            }
            if (p.nextToken() != null) {
                throw invalidJson("unexpected content after the document");
            }
            return root;
        } catch (JsonProcessingException e) {
            String at = e.getLocation() == null ? "" : " at char " + e.getLocation().getCharOffset();
            throw invalidJson(e.getOriginalMessage() + at);
        } catch (IOException e) {
            throw invalidJson(String.valueOf(e.getMessage()));
        }
    }

    /** One value; the strings and numbers inside arrays and objects are checked too, but not kept. */
    private static Object value(JsonParser p, JsonToken t) throws IOException, Rejected {
        switch (t) {
            case VALUE_STRING:
                return checked(p.getText());
            case VALUE_NUMBER_INT:
            case VALUE_NUMBER_FLOAT:
                double d = Double.parseDouble(p.getText()); // correctly rounded
                if (Double.isInfinite(d)) {
                    throw invalidJson("number " + p.getText().substring(0, Math.min(32, p.getTextLength()))
                            + " is beyond the range of a double");
                }
                return new Num(t == JsonToken.VALUE_NUMBER_INT, p.getText(), d);
            case VALUE_TRUE:
                return Boolean.TRUE;
            case VALUE_FALSE:
                return Boolean.FALSE;
            case VALUE_NULL:
                return null;
            case START_ARRAY:
            case START_OBJECT:
                for (int depth = 1; depth > 0; ) {
                    JsonToken inner = p.nextToken();
                    if (inner == null) {
                        throw invalidJson("unexpected end of data");
                    }
                    if (inner == JsonToken.START_ARRAY || inner == JsonToken.START_OBJECT) {
                        depth++;
                    } else if (inner == JsonToken.END_ARRAY || inner == JsonToken.END_OBJECT) {
                        depth--;
                    } else if (inner == JsonToken.FIELD_NAME) {
                        checked(p.currentName());
                    } else {
                        value(p, inner);
                    }
                }
                return t == JsonToken.START_ARRAY ? ARRAY : OBJECT;
            default:
                throw invalidJson("unexpected token " + t);
        }
    }

    /** A \\uD800-\\uDFFF escape that is not half of a pair is not Unicode text: invalid JSON. */
    private static String checked(String s) throws Rejected {
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            if (Character.isHighSurrogate(c) && k + 1 < s.length() && Character.isLowSurrogate(s.charAt(k + 1))) {
                k++;
            } else if (Character.isSurrogate(c)) {
                throw invalidJson("lone surrogate \\u" + Integer.toHexString(c) + " in a string");
            }
        }
        return s;
    }

    // ---------------------------------------------------------------- the order contract

    @SuppressWarnings("unchecked")
    private static Parsed toOrder(Object doc) throws Rejected {
        if (!(doc instanceof Map)) {
            throw new Rejected("not_an_object", "expected a JSON object, got " + jsonType(doc));
        }
        Map<String, Object> data = (Map<String, Object>) doc;
        // Producers of the system we replace call the id `order_id`; accept either name.
        String idName = data.get("transaction_id") != null ? "transaction_id" : "order_id";
        if (data.get(idName) == null) {
            throw new Rejected("missing_field", "'transaction_id' (or 'order_id') is missing");
        }
        String[] ids = new String[6];
        ids[0] = requireStr(data, idName);
        for (int k = 0; k < ID_FIELDS.length; k++) {
            ids[k + 1] = requireStr(data, ID_FIELDS[k]);
        }
        Object behavior = data.get("behavior");
        if (behavior != null && !(behavior instanceof String)) {
            throw new Rejected("wrong_type", "'behavior' must be a string, got " + jsonType(behavior));
        }
        if (behavior != null && ((String) behavior).length() > MAX_ID_CHARS
                && ((String) behavior).codePointCount(0, ((String) behavior).length()) > MAX_ID_CHARS) {
            throw new Rejected("invalid_value", "'behavior' is longer than " + MAX_ID_CHARS + " characters");
        }
        double amount = amount(data);
        long eventTime = eventTime(data);
        return new Parsed(null, null, ids, amount, eventTime, (String) behavior);
    }

    private static Object present(Map<String, Object> data, String name) throws Rejected {
        Object value = data.get(name);
        if (value == null) {
            throw new Rejected("missing_field", "'" + name + "' is missing");
        }
        return value;
    }

    private static String requireStr(Map<String, Object> data, String name) throws Rejected {
        Object value = present(data, name);
        if (!(value instanceof String)) {
            throw new Rejected("wrong_type", "'" + name + "' must be a string, got " + jsonType(value));
        }
        String s = (String) value;
        if (isBlank(s)) {
            throw new Rejected("invalid_value", "'" + name + "' must be a non-blank string");
        }
        if (s.length() > MAX_ID_CHARS && s.codePointCount(0, s.length()) > MAX_ID_CHARS) {
            throw new Rejected("invalid_value", "'" + name + "' is longer than " + MAX_ID_CHARS + " characters");
        }
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            if (isControl(c)) {
                // An id is shown on analysts' terminals and in app.log: no escape sequences, no line breaks.
                throw new Rejected("invalid_value", String.format(
                        "'%s' holds a control character (U+%04X at character %d)", name, (int) c, s.codePointCount(0, k)));
            }
        }
        return s;
    }

    /**
     * C0, DEL and C1, the line and paragraph separators and the bidirectional formatting
     * characters: the set of {@code fraudstream.events.text.CONTROL_CLASS}, all in the BMP.
     */
    static boolean isControl(char c) {
        return c < 0x20
                || (c >= 0x7f && c <= 0x9f)
                || c == 0x061c
                || c == 0x200e
                || c == 0x200f
                || c == 0x2028
                || c == 0x2029
                || (c >= 0x202a && c <= 0x202e)
                || (c >= 0x2066 && c <= 0x2069);
    }

    private static double amount(Map<String, Object> data) throws Rejected {
        Object value = present(data, "amount");
        if (!(value instanceof Num)) {
            throw new Rejected("wrong_type", "'amount' must be a number, got " + jsonType(value));
        }
        double amount = ((Num) value).value;
        if (Double.isNaN(amount) || Double.isInfinite(amount)) {
            throw new Rejected("invalid_value", "'amount' must be finite");
        }
        if (amount < 0) {
            throw new Rejected("invalid_value", "'amount' must be >= 0, got " + amount);
        }
        return amount + 0.0; // -0.0 becomes 0.0
    }

    private static long eventTime(Map<String, Object> data) throws Rejected {
        Object value = present(data, "event_time");
        long millis;
        if (value instanceof String) {
            millis = rfc3339Millis((String) value);
        } else if (!(value instanceof Num)) {
            throw new Rejected("wrong_type", "'event_time' must be a number or a string, got " + jsonType(value));
        } else if (!((Num) value).integer) {
            throw new Rejected("invalid_value",
                    "'event_time' must be whole epoch milliseconds (no fraction or exponent)");
        } else {
            try {
                millis = Long.parseLong(((Num) value).text);
            } catch (NumberFormatException beyond64Bits) {
                throw new Rejected("invalid_value", "'event_time' " + ((Num) value).text + " is out of range");
            }
        }
        if (millis < 0 || millis > MAX_EVENT_TIME) {
            throw new Rejected("invalid_value", "'event_time' " + millis + " is out of range");
        }
        return millis;
    }

    /** Epoch milliseconds of an RFC 3339 timestamp with a zone; digits past the millisecond are dropped. */
    static long rfc3339Millis(String value) throws Rejected {
        Matcher m = RFC3339.matcher(value);
        if (!m.matches()) {
            String shown = value.length() > 64 ? value.substring(0, 64) : value;
            throw new Rejected("invalid_value", "'event_time' is not an RFC 3339 timestamp: \"" + shown + "\"");
        }
        if (m.group(8) == null && m.group(9) == null) {
            throw new Rejected("invalid_value", "'event_time' timestamp must carry a time zone ('Z' or ±HH:MM)");
        }
        long days;
        try {
            days = LocalDate.of(num(m, 1), num(m, 2), num(m, 3)).toEpochDay();
        } catch (DateTimeException e) {
            throw new Rejected("invalid_value", "'event_time' has no such date: \"" + value.substring(0, 10) + "\"");
        }
        if (num(m, 4) > 23 || num(m, 5) > 59 || num(m, 6) > 59) {
            throw new Rejected("invalid_value",
                    "'event_time' has no such time of day: \"" + value.substring(11, 19) + "\"");
        }
        long offset = 0;
        if (m.group(9) != null) {
            if (num(m, 10) > 23 || num(m, 11) > 59) {
                throw new Rejected("invalid_value", "'event_time' offset must be within ±23:59");
            }
            offset = (num(m, 10) * 60L + num(m, 11)) * 60 * ("-".equals(m.group(9)) ? -1 : 1);
        }
        long seconds = days * 86_400 + num(m, 4) * 3_600L + num(m, 5) * 60L + num(m, 6) - offset;
        String fraction = m.group(7) == null ? "" : m.group(7);
        int millis = Integer.parseInt((fraction + "000").substring(0, 3));
        return seconds * 1000 + millis;
    }

    private static int num(Matcher m, int group) {
        return Integer.parseInt(m.group(group));
    }
}
