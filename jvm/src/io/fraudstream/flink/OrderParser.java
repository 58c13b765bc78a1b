package io.fraudstream.flink;

import java.io.IOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.MathContext;
import java.math.RoundingMode;
import java.nio.charset.StandardCharsets;
import java.time.LocalDate;
import java.time.Year;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonLocation;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonProcessingException;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.StreamReadConstraints;

/**
 * Turns one raw record into an order or a (reason, detail) rejection, exactly as the Python
 * admission does ({@code fraudstream.events.parse.parse_record}): same reason codes, same
 * details (except for invalid JSON, whose text names the parser), same accepted inputs.
 *
 * <p>Matching Python means matching three libraries, not just the schema: CPython's UTF-8
 * decoder (its error positions and its U+FFFD replacement), orjson (strict RFC 8259, last
 * duplicate key wins, no NaN/Infinity, no lone surrogate escapes, integers outside
 * [-2^63, 2^64) become floats, a number that overflows a double is invalid JSON, depth at
 * most 1024) and CPython 3.11's {@code datetime.fromisoformat}, ported byte for byte below
 * because its C parser accepts more than ISO 8601 (and some odd strings) and rejects some.
 * The parity test (tests/flink/test_java_parser.py) holds the two sides together.
 *
 * <p>Pure and static: no state, safe from any thread.
 */
public final class OrderParser {

    static final long MAX_EVENT_TIME = 253_402_300_799_999L; // 9999-12-31T23:59:59.999Z
    static final int MAX_ID_CHARS = 256;
    private static final String[] ID_FIELDS = {"user_id", "device_id", "restaurant_id", "city", "payment_method"};
    /** orjson's nesting limit: 1024 open arrays/objects parse, 1025 do not. */
    private static final int MAX_DEPTH = 1024;

    private static final JsonFactory JSON = JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder()
                    .maxNestingDepth(MAX_DEPTH)
                    // orjson has no length limits; the record size limit bounds them here.
                    .maxNumberLength(Integer.MAX_VALUE)
                    .maxStringLength(Integer.MAX_VALUE)
                    .maxNameLength(Integer.MAX_VALUE)
                    .build())
            // Keys come from untrusted input: don't intern them into the JVM's string pool.
            .disable(JsonFactory.Feature.INTERN_FIELD_NAMES)
            .build();

    /** Stand-ins for container values: only their Python type name matters. */
    private static final Object LIST = new Object();
    private static final Object DICT = new Object();

    private static final BigInteger TWO_64 = BigInteger.ONE.shiftLeft(64);

    private OrderParser() {}

    /** One parsed record: the order's fields when {@link #isValid()}, else reason and detail. */
    public static final class Parsed {
        private final String reason;
        private final String detail;
        private final String transactionId;
        private final String userId;
        private final String deviceId;
        private final String restaurantId;
        private final double amount;
        private final String city;
        private final String paymentMethod;
        private final long eventTime;
        private final String behavior;

        private Parsed(String reason, String detail) {
            this(reason, detail, null, null, null, null, 0.0, null, null, 0L, null);
        }

        private Parsed(String reason, String detail, String transactionId, String userId, String deviceId,
                String restaurantId, double amount, String city, String paymentMethod, long eventTime,
                String behavior) {
            this.reason = reason;
            this.detail = detail;
            this.transactionId = transactionId;
            this.userId = userId;
            this.deviceId = deviceId;
            this.restaurantId = restaurantId;
            this.amount = amount;
            this.city = city;
            this.paymentMethod = paymentMethod;
            this.eventTime = eventTime;
            this.behavior = behavior;
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
            return transactionId;
        }

        public String getUserId() {
            return userId;
        }

        public String getDeviceId() {
            return deviceId;
        }

        public String getRestaurantId() {
            return restaurantId;
        }

        /** The amount, or null when the record was rejected. */
        public Double getAmount() {
            return isValid() ? amount : null;
        }

        public String getCity() {
            return city;
        }

        public String getPaymentMethod() {
            return paymentMethod;
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
                    ? "Order(" + transactionId + ", " + userId + ", " + deviceId + ", " + restaurantId + ", "
                            + amount + ", " + city + ", " + paymentMethod + ", " + eventTime + ", " + behavior + ")"
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
     * Parses and validates one record. Returns null for a blank record (Python whitespace
     * only: skipped, not an error) and, as Python does, for the JSON document {@code null};
     * else a {@link Parsed} that is either valid or rejected.
     */
    public static Parsed parse(byte[] raw, int maxRecordBytes) {
        if (raw == null) {
            return null; // a Kafka tombstone carries no record at all
        }
        try {
            // Size first, on the bytes: a huge record is never decoded.
            if (raw.length > maxRecordBytes) {
                throw new Rejected("too_large", "record is " + raw.length + " bytes, limit is " + maxRecordBytes);
            }
            String text = decodeUtf8(raw, false);
            if (isPyBlank(text)) {
                return null;
            }
            Object doc = readJson(text);
            if (doc == null) {
                return null; // Python skips a `null` document like a blank line (parse.py's _decode)
            }
            return toOrder(doc);
        } catch (Rejected r) {
            return new Parsed(r.reason, r.getMessage());
        }
    }

    /**
     * The raw record as a dead letter keeps it: decoded as UTF-8 with U+FFFD for each bad
     * sequence (as CPython's "replace" does), and cut to {@code maxChars} code points plus a
     * note of how many were cut.
     */
    public static String deadLetterRaw(byte[] raw, int maxChars) {
        String text;
        try {
            text = raw == null ? "" : decodeUtf8(raw, true);
        } catch (Rejected impossible) {
            throw new IllegalStateException(impossible);
        }
        return truncate(text, maxChars);
    }

    /** Python's {@code text[:cap] + f"...[truncated {n} chars]"}, counting code points. */
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

    // ---------------------------------------------------------------- UTF-8, as CPython decodes it

    private static boolean cont(int b) {
        return (b & 0xC0) == 0x80;
    }

    /**
     * CPython's UTF-8 decoder (Objects/stringlib/codecs.h): strict, it rejects at the first
     * error with Python's reason and byte position; with {@code replace}, each maximal
     * invalid subpart becomes one U+FFFD. Surrogates (ED A0..BF) and overlongs are invalid.
     */
    static String decodeUtf8(byte[] b, boolean replace) throws Rejected {
        int n = b.length;
        int i = 0;
        while (i < n && b[i] >= 0) {
            i++;
        }
        if (i == n) {
            return new String(b, 0, n, StandardCharsets.ISO_8859_1); // all ASCII
        }
        char[] out = new char[n]; // never more UTF-16 units than bytes
        for (int k = 0; k < i; k++) {
            out[k] = (char) b[k];
        }
        int o = i;
        while (i < n) {
            int c = b[i] & 0xFF;
            if (c < 0x80) {
                out[o++] = (char) c;
                i++;
                continue;
            }
            int left = n - i;
            // bad: 1 = invalid start byte, 2..4 = invalid continuation (bad - 1 bytes), 5 = unexpected end
            int bad = 0;
            if (c < 0xC2) {
                bad = 1;
            } else if (c < 0xE0) {
                if (left < 2) {
                    bad = 5;
                } else if (!cont(b[i + 1])) {
                    bad = 2;
                } else {
                    out[o++] = (char) (((c & 0x1F) << 6) | (b[i + 1] & 0x3F));
                    i += 2;
                }
            } else if (c < 0xF0) {
                if (left < 3) {
                    if (left < 2) {
                        bad = 5;
                    } else {
                        int c2 = b[i + 1] & 0xFF;
                        bad = !cont(c2) || (c2 < 0xA0 ? c == 0xE0 : c == 0xED) ? 2 : 5;
                    }
                } else {
                    int c2 = b[i + 1] & 0xFF;
                    int c3 = b[i + 2] & 0xFF;
                    if (!cont(c2) || (c == 0xE0 && c2 < 0xA0) || (c == 0xED && c2 >= 0xA0)) {
                        bad = 2;
                    } else if (!cont(c3)) {
                        bad = 3;
                    } else {
                        out[o++] = (char) (((c & 0x0F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F));
                        i += 3;
                    }
                }
            } else if (c < 0xF5) {
                if (left < 4) {
                    if (left < 2) {
                        bad = 5;
                    } else {
                        int c2 = b[i + 1] & 0xFF;
                        if (!cont(c2) || (c2 < 0x90 ? c == 0xF0 : c == 0xF4)) {
                            bad = 2;
                        } else if (left < 3) {
                            bad = 5;
                        } else {
                            bad = cont(b[i + 2]) ? 5 : 3;
                        }
                    }
                } else {
                    int c2 = b[i + 1] & 0xFF;
                    int c3 = b[i + 2] & 0xFF;
                    int c4 = b[i + 3] & 0xFF;
                    if (!cont(c2) || (c == 0xF0 && c2 < 0x90) || (c == 0xF4 && c2 >= 0x90)) {
                        bad = 2;
                    } else if (!cont(c3)) {
                        bad = 3;
                    } else if (!cont(c4)) {
                        bad = 4;
                    } else {
                        int cp = ((c & 0x07) << 18) | ((c2 & 0x3F) << 12) | ((c3 & 0x3F) << 6) | (c4 & 0x3F);
                        out[o++] = Character.highSurrogate(cp);
                        out[o++] = Character.lowSurrogate(cp);
                        i += 4;
                    }
                }
            } else {
                bad = 1;
            }
            if (bad == 0) {
                continue;
            }
            if (!replace) {
                String why = bad == 1 ? "invalid start byte" : bad == 5 ? "unexpected end of data"
                        : "invalid continuation byte";
                throw new Rejected("undecodable", "not valid UTF-8: " + why + " at byte " + i);
            }
            out[o++] = '\uFFFD';
            i = bad == 5 ? n : i + (bad == 1 ? 1 : bad - 1);
        }
        return new String(out, 0, o);
    }

    // ---------------------------------------------------------------- Python string semantics

    /** {@code str.isspace()} for one UTF-16 unit (every Python whitespace character is in the BMP). */
    static boolean isPySpace(char c) {
        if (c <= 0x20) {
            return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F);
        }
        if (c < 0x85) {
            return false;
        }
        return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028
                || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
    }

    /** {@code not s.strip()}. */
    static boolean isPyBlank(String s) {
        for (int k = 0; k < s.length(); k++) {
            if (!isPySpace(s.charAt(k))) {
                return false;
            }
        }
        return true;
    }

    /** {@code s.strip()}. */
    static String pyStrip(String s) {
        int start = 0;
        int end = s.length();
        while (start < end && isPySpace(s.charAt(start))) {
            start++;
        }
        while (end > start && isPySpace(s.charAt(end - 1))) {
            end--;
        }
        return s.substring(start, end);
    }

    /** {@code repr(s)} for a str (CPython's unicode_repr; printability per Java's Unicode tables). */
    static String pyRepr(String s) {
        boolean single = s.indexOf('\'') >= 0;
        boolean dbl = s.indexOf('"') >= 0;
        char quote = single && !dbl ? '"' : '\'';
        StringBuilder out = new StringBuilder(s.length() + 2).append(quote);
        for (int k = 0; k < s.length(); ) {
            int cp = s.codePointAt(k);
            k += Character.charCount(cp);
            if (cp == quote || cp == '\\') {
                out.append('\\').appendCodePoint(cp);
            } else if (cp == '\t') {
                out.append("\\t");
            } else if (cp == '\n') {
                out.append("\\n");
            } else if (cp == '\r') {
                out.append("\\r");
            } else if (cp < 0x20 || cp == 0x7F) {
                out.append(String.format("\\x%02x", cp));
            } else if (cp < 0x7F || isPyPrintable(cp)) {
                out.appendCodePoint(cp);
            } else if (cp <= 0xFF) {
                out.append(String.format("\\x%02x", cp));
            } else if (cp <= 0xFFFF) {
                out.append(String.format("\\u%04x", cp));
            } else {
                out.append(String.format("\\U%08x", cp));
            }
        }
        return out.append(quote).toString();
    }

    private static boolean isPyPrintable(int cp) {
        switch (Character.getType(cp)) {
            case Character.CONTROL:
            case Character.FORMAT:
            case Character.SURROGATE:
            case Character.PRIVATE_USE:
            case Character.UNASSIGNED:
            case Character.LINE_SEPARATOR:
            case Character.PARAGRAPH_SEPARATOR:
            case Character.SPACE_SEPARATOR:
                return false;
            default:
                return true;
        }
    }

    /**
     * {@code repr(d)} for a float: the shortest decimal that reads back as {@code d} (the
     * nearest one if several), fixed notation for exponents -4..15, else {@code 1.5e+20}.
     */
    static String pyFloatRepr(double d) {
        if (Double.isNaN(d)) {
            return "nan";
        }
        if (Double.isInfinite(d)) {
            return d > 0 ? "inf" : "-inf";
        }
        if (d == 0) {
            return 1 / d < 0 ? "-0.0" : "0.0";
        }
        BigDecimal exact = new BigDecimal(d);
        BigDecimal best = null;
        for (int p = 1; p <= 17 && best == null; p++) {
            BigDecimal r = exact.round(new MathContext(p, RoundingMode.HALF_EVEN));
            BigDecimal unit = BigDecimal.ONE.scaleByPowerOfTen(-r.scale());
            // At a power of two the interval that reads back is lopsided: a neighbour of the
            // nearest p-digit decimal may read back where the nearest one does not.
            for (BigDecimal c : new BigDecimal[] {r, r.subtract(unit), r.add(unit)}) {
                if (c.doubleValue() == d
                        && (best == null || c.subtract(exact).abs().compareTo(best.subtract(exact).abs()) < 0)) {
                    best = c;
                }
            }
        }
        BigDecimal r = best.stripTrailingZeros();
        String digits = r.unscaledValue().abs().toString();
        int decpt = digits.length() - r.scale(); // value = 0.DIGITS * 10^decpt
        StringBuilder out = new StringBuilder(d < 0 ? "-" : "");
        if (decpt <= -4 || decpt > 16) {
            out.append(digits.charAt(0));
            if (digits.length() > 1) {
                out.append('.').append(digits, 1, digits.length());
            }
            int exp = decpt - 1;
            out.append('e').append(exp < 0 ? '-' : '+');
            if (Math.abs(exp) < 10) {
                out.append('0');
            }
            out.append(Math.abs(exp));
        } else if (decpt <= 0) {
            out.append("0.").append("0".repeat(-decpt)).append(digits);
        } else if (decpt >= digits.length()) {
            out.append(digits).append("0".repeat(decpt - digits.length())).append(".0");
        } else {
            out.append(digits, 0, decpt).append('.').append(digits, decpt, digits.length());
        }
        return out.toString();
    }

    /** {@code type(v).__name__} of the value orjson would have produced. */
    private static String typeName(Object v) {
        if (v == null) {
            return "NoneType";
        }
        if (v instanceof String) {
            return "str";
        }
        if (v instanceof Long || v instanceof BigInteger) {
            return "int";
        }
        if (v instanceof Double) {
            return "float";
        }
        if (v instanceof Boolean) {
            return "bool";
        }
        return v == LIST ? "list" : "dict";
    }

    // ---------------------------------------------------------------- JSON, as orjson reads it

    private static Rejected invalidJson(String message, JsonLocation at) {
        if (at != null && at.getLineNr() > 0) {
            message += ": line " + at.getLineNr() + " column " + at.getColumnNr() + " (char "
                    + at.getCharOffset() + ")";
        }
        return new Rejected("invalid_json", message);
    }

    /** The document: a map of the top-level object's fields (last duplicate wins), or another value. */
    private static Object readJson(String text) throws Rejected {
        try (JsonParser p = JSON.createParser(text)) {
            JsonToken t = p.nextToken();
            if (t == null) {
                throw invalidJson("expected a JSON value", p.currentLocation());
            }
            Object root;
            if (t == JsonToken.START_OBJECT) {
                Map<String, Object> fields = new HashMap<>();
                while (p.nextToken() == JsonToken.FIELD_NAME) {
                    String name = checked(p.currentName(), p);
                    fields.put(name, readValue(p, p.nextToken()));
                }
                root = fields;
            } else {
                root = readValue(p, t);
            }
            if (p.nextToken() != null) {
                throw invalidJson("unexpected content after document", p.currentTokenLocation());
            }
            return root;
        } catch (JsonProcessingException e) {
            String message = e.getOriginalMessage();
            if (message != null && message.startsWith("Document nesting depth")) {
                message = "depth limit exceeded";
            }
            throw invalidJson(message, e.getLocation());
        } catch (IOException e) {
            throw invalidJson(String.valueOf(e.getMessage()), null);
        }
    }

    /** One value; containers are walked (their numbers and strings must be valid too) and typed only. */
    private static Object readValue(JsonParser p, JsonToken t) throws IOException, Rejected {
        switch (t) {
            case VALUE_STRING:
                return checked(p.getText(), p);
            case VALUE_NUMBER_INT:
                return intValue(p.getText(), p);
            case VALUE_NUMBER_FLOAT:
                return floatValue(p.getText(), p);
            case VALUE_TRUE:
                return Boolean.TRUE;
            case VALUE_FALSE:
                return Boolean.FALSE;
            case VALUE_NULL:
                return null;
            case START_ARRAY:
            case START_OBJECT:
                Object kind = t == JsonToken.START_ARRAY ? LIST : DICT;
                int depth = 1;
                while (depth > 0) {
                    JsonToken inner = p.nextToken();
                    if (inner == null) {
                        throw invalidJson("unexpected end of data", p.currentLocation());
                    }
                    switch (inner) {
                        case START_ARRAY:
                        case START_OBJECT:
                            depth++;
                            break;
                        case END_ARRAY:
                        case END_OBJECT:
                            depth--;
                            break;
                        case FIELD_NAME:
                            checked(p.currentName(), p);
                            break;
                        case VALUE_STRING:
                        case VALUE_NUMBER_INT:
                        case VALUE_NUMBER_FLOAT:
                            readValue(p, inner);
                            break;
                        default:
                            break;
                    }
                }
                return kind;
            default:
                throw invalidJson("unexpected token " + t, p.currentTokenLocation());
        }
    }

    /** orjson rejects a \\uD800-\\uDFFF escape that is not half of a pair; Jackson keeps it. */
    private static String checked(String s, JsonParser p) throws Rejected {
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            if (Character.isHighSurrogate(c)) {
                if (k + 1 < s.length() && Character.isLowSurrogate(s.charAt(k + 1))) {
                    k++;
                    continue;
                }
                throw invalidJson("no low surrogate in string", p.currentTokenLocation());
            }
            if (Character.isLowSurrogate(c)) {
                throw invalidJson("invalid high surrogate in string", p.currentTokenLocation());
            }
        }
        return s;
    }

    /**
     * An integer literal as orjson reads it: an int (Long, or BigInteger up to 2^64 - 1) from
     * -2^63 to 2^64 - 1, else a float, and invalid JSON if that float would be infinite.
     */
    private static Object intValue(String text, JsonParser p) throws Rejected {
        int digits = text.length() - (text.charAt(0) == '-' ? 1 : 0);
        if (digits <= 18) {
            return Long.parseLong(text);
        }
        if (digits > 400) { // >= 10^400: far beyond a double (literals have no leading zeros)
            throw invalidJson("number is infinity when parsed as double", p.currentTokenLocation());
        }
        BigInteger big = new BigInteger(text);
        if (big.bitLength() <= 63) {
            return big.longValue();
        }
        if (big.signum() > 0 && big.compareTo(TWO_64) < 0) {
            return big;
        }
        return finite(big.doubleValue(), p);
    }

    private static Object floatValue(String text, JsonParser p) throws Rejected {
        return finite(Double.parseDouble(text), p); // correctly rounded, like orjson
    }

    private static Double finite(double d, JsonParser p) throws Rejected {
        if (Double.isInfinite(d)) {
            throw invalidJson("number is infinity when parsed as double", p.currentTokenLocation());
        }
        return d;
    }

    // ---------------------------------------------------------------- the order contract

    @SuppressWarnings("unchecked")
    private static Parsed toOrder(Object doc) throws Rejected {
        if (!(doc instanceof Map)) {
            throw new Rejected("not_an_object", "expected a JSON object, got " + typeName(doc));
        }
        Map<String, Object> data = (Map<String, Object>) doc;
        // Producers of the system we replace call the id `order_id`; accept either name.
        String idName = data.get("transaction_id") != null ? "transaction_id" : "order_id";
        if (data.get(idName) == null) {
            throw new Rejected("missing_field", "'transaction_id' (or 'order_id') is missing");
        }
        String transactionId = requireStr(data, idName);
        String[] ids = new String[ID_FIELDS.length];
        for (int k = 0; k < ids.length; k++) {
            ids[k] = requireStr(data, ID_FIELDS[k]);
        }
        Object behavior = data.get("behavior");
        if (behavior != null && !(behavior instanceof String)) {
            throw new Rejected("wrong_type", "'behavior' must be a string, got " + typeName(behavior));
        }
        double amount = amount(data);
        long eventTime = eventTime(data);
        return new Parsed(null, null, transactionId, ids[0], ids[1], ids[2], amount, ids[3], ids[4], eventTime,
                (String) behavior);
    }

    private static String requireStr(Map<String, Object> data, String name) throws Rejected {
        Object value = data.get(name);
        if (value == null) {
            throw new Rejected("missing_field", "'" + name + "' is missing");
        }
        if (!(value instanceof String)) {
            throw new Rejected("wrong_type", "'" + name + "' must be a string, got " + typeName(value));
        }
        String s = (String) value;
        if (isPyBlank(s)) {
            throw new Rejected("invalid_value", "'" + name + "' must be a non-empty string");
        }
        if (s.length() > MAX_ID_CHARS && s.codePointCount(0, s.length()) > MAX_ID_CHARS) {
            throw new Rejected("invalid_value", "'" + name + "' is longer than " + MAX_ID_CHARS + " characters");
        }
        return s;
    }

    private static double amount(Map<String, Object> data) throws Rejected {
        Object value = data.get("amount");
        if (value == null) {
            throw new Rejected("missing_field", "'amount' is missing");
        }
        double amount;
        if (value instanceof Long) {
            amount = (double) (Long) value; // round-half-even, like float(int)
        } else if (value instanceof BigInteger) {
            amount = ((BigInteger) value).doubleValue();
        } else if (value instanceof Double) {
            amount = (Double) value;
        } else {
            throw new Rejected("wrong_type", "'amount' must be a number, got " + typeName(value));
        }
        if (Double.isNaN(amount) || Double.isInfinite(amount)) {
            throw new Rejected("invalid_value", "'amount' must be finite");
        }
        if (amount < 0) {
            throw new Rejected("invalid_value", "'amount' must be >= 0, got " + pyFloatRepr(amount));
        }
        return amount;
    }

    private static long eventTime(Map<String, Object> data) throws Rejected {
        Object value = data.get("event_time");
        if (value == null) {
            throw new Rejected("missing_field", "'event_time' is missing");
        }
        if (value instanceof BigInteger) { // 2^63 .. 2^64 - 1
            throw new Rejected("invalid_value", "'event_time' " + value + " is out of range");
        }
        long millis;
        if (value instanceof Long) {
            millis = (Long) value;
        } else if (value instanceof String) {
            millis = isoMillis((String) value);
        } else {
            throw new Rejected("wrong_type",
                    "'event_time' must be epoch milliseconds or ISO-8601, got " + typeName(value));
        }
        if (millis < 0 || millis > MAX_EVENT_TIME) {
            throw new Rejected("invalid_value", "'event_time' " + millis + " is out of range");
        }
        return millis;
    }

    // ---------------------------------------------------------------- ISO-8601, as CPython 3.11 reads it

    /**
     * Python's {@code int(datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp() * 1000)},
     * rejecting strings fromisoformat rejects and naive times.
     */
    static long isoMillis(String value) throws Rejected {
        long[] utcMicros = IsoFormat.parse(pyStrip(value).replace("Z", "+00:00"));
        if (utcMicros == null) {
            int cut = value.offsetByCodePoints(0, Math.min(64, value.codePointCount(0, value.length())));
            throw new Rejected("invalid_value", "'event_time' is not ISO-8601: " + pyRepr(value.substring(0, cut)));
        }
        if (utcMicros.length == 0) {
            throw new Rejected("invalid_value", "'event_time' ISO-8601 string must carry a time zone");
        }
        // timestamp() is total microseconds / 10^6, correctly rounded to a double (as int / int
        // is in Python); then * 1000 in doubles and truncation toward zero, as int(float) does.
        double seconds = BigDecimal.valueOf(utcMicros[0], 6).doubleValue();
        return (long) (seconds * 1000.0);
    }

    /**
     * A port of CPython 3.11's C {@code datetime.fromisoformat} (Modules/_datetimemodule.c),
     * which works on the string's UTF-8 bytes with a NUL after them (an embedded NUL, from a
     * JSON \\u0000, ends the string in some of its checks, as in C).
     */
    static final class IsoFormat {
        private final byte[] s;
        private final int len;
        // time fields filled by parseTime / hhmmss
        private int hour;
        private int minute;
        private int second;
        private int micro;
        private int tzOffset;
        private int tzMicro;

        private IsoFormat(byte[] s) {
            this.s = s;
            this.len = s.length;
        }

        /** Byte at i, and NUL at and past the end, like the C string. */
        private int at(int i) {
            return i < len ? s[i] & 0xFF : 0;
        }

        private static boolean isDigit(int c) {
            return c >= '0' && c <= '9';
        }

        /**
         * {UTC epoch microseconds} for an aware time, {} for a naive one, null where
         * fromisoformat raises ValueError.
         */
        static long[] parse(String dt) {
            if (dt.codePointCount(0, dt.length()) < 7) {
                return null;
            }
            return new IsoFormat(dt.getBytes(StandardCharsets.UTF_8)).parse();
        }

        private long[] parse() {
            int sep = separator();
            if (sep < 0) {
                return null; // "YYYY-Www-": the day digit that must follow is missing
            }
            int[] ymd = date(sep);
            if (ymd == null) {
                return null;
            }
            int rv = 0;
            if (len > sep) {
                int lead = at(sep);
                int p = sep + ((lead & 0x80) == 0 ? 1 : (lead & 0xF0) == 0xE0 ? 3 : (lead & 0xF0) == 0xF0 ? 4 : 2);
                rv = time(p, len - p);
                if (rv < 0) {
                    return null;
                }
            }
            long offsetMicros = 0;
            if (rv == 1 && tzOffset != 0) { // an offset of 0 s is UTC, whatever its microseconds
                offsetMicros = tzOffset * 1_000_000L + tzMicro;
                if (offsetMicros <= -86_400_000_000L || offsetMicros >= 86_400_000_000L) {
                    return null; // timezone(): strictly between -24 h and 24 h
                }
            }
            int y = ymd[0];
            int m = ymd[1];
            int d = ymd[2];
            if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1 || d > LocalDate.of(y, m, 1).lengthOfMonth()) {
                return null;
            }
            if (hour > 23 || minute > 59 || second > 59 || micro > 999_999) {
                return null;
            }
            if (rv == 0) {
                return new long[0];
            }
            long days = LocalDate.of(y, m, d).toEpochDay();
            long local = ((days * 24 + hour) * 60 + minute) * 60 + second;
            return new long[] {local * 1_000_000L + micro - offsetMicros};
        }

        /** _find_isoformat_datetime_separator: where the date ends (-1: invalid). */
        private int separator() {
            if (len == 7) {
                return 7;
            }
            if (at(4) == '-') {
                if (at(5) == 'W') {
                    if (len < 8) {
                        return -1;
                    }
                    if (len > 8 && at(8) == '-') {
                        if (len == 9) {
                            return -1;
                        }
                        if (len > 10 && isDigit(at(10))) {
                            return 8;
                        }
                        return 10;
                    }
                    return 8;
                }
                return 10;
            }
            if (at(4) == 'W') {
                int idx = 7;
                while (idx < len && isDigit(at(idx))) {
                    idx++;
                }
                if (idx < 9) {
                    return idx;
                }
                return idx % 2 == 0 ? 7 : 8;
            }
            return 8;
        }

        /** Parses n digits at p into acc[0]; returns the position after them, or -1. */
        private int digits(int p, int n, int[] acc) {
            for (int k = 0; k < n; k++) {
                int c = at(p++) - '0';
                if (c < 0 || c > 9) {
                    return -1;
                }
                acc[0] = acc[0] * 10 + c;
            }
            return p;
        }

        /** parse_isoformat_date: {year, month, day} (unchecked), or null. */
        private int[] date(int sepLen) {
            int[] year = {0};
            int p = digits(0, 4, year);
            if (p < 0) {
                return null;
            }
            boolean usesSep = at(p) == '-';
            if (usesSep) {
                p++;
            }
            if (at(p) == 'W') {
                p++;
                int[] week = {0};
                int[] day = {0};
                p = digits(p, 2, week);
                if (p < 0) {
                    return null;
                }
                if (p < sepLen) {
                    if (usesSep && at(p++) != '-') {
                        return null;
                    }
                    if (digits(p, 1, day) < 0) {
                        return null;
                    }
                } else {
                    day[0] = 1;
                }
                return isoToYmd(year[0], week[0], day[0]);
            }
            int[] month = {0};
            int[] day = {0};
            p = digits(p, 2, month);
            if (p < 0) {
                return null;
            }
            if (usesSep && at(p++) != '-') {
                return null;
            }
            if (digits(p, 2, day) < 0) {
                return null;
            }
            return new int[] {year[0], month[0], day[0]};
        }

        /** iso_to_ymd. Year 0 (which Python's ordinals cannot hold) never gives a valid date. */
        private static int[] isoToYmd(int year, int week, int day) {
            if (year < 1) {
                return null;
            }
            LocalDate jan1 = LocalDate.of(year, 1, 1);
            int firstWeekday = jan1.getDayOfWeek().getValue() - 1; // Monday = 0
            if (week <= 0 || week >= 53) {
                boolean ok = week == 53 && (firstWeekday == 3 || (firstWeekday == 2 && Year.isLeap(year)));
                if (!ok) {
                    return null;
                }
            }
            if (day <= 0 || day >= 8) {
                return null;
            }
            LocalDate monday = jan1.minusDays(firstWeekday);
            if (firstWeekday > 3) {
                monday = monday.plusDays(7);
            }
            LocalDate date = monday.plusDays((week - 1) * 7L + day - 1);
            if (date.getYear() > 9999) {
                return null;
            }
            return new int[] {date.getYear(), date.getMonthValue(), date.getDayOfMonth()};
        }

        /** parse_isoformat_time from p, dtLen bytes: 0 naive, 1 with an offset, < 0 invalid. */
        private int time(int p, int dtLen) {
            int end = p + dtLen;
            int tz = p;
            do {
                int c = at(tz);
                if (c == 'Z' || c == '+' || c == '-') {
                    break;
                }
            } while (++tz < end);
            int[] f = new int[4];
            int rv = hhmmss(p, tz, f);
            hour = f[0];
            minute = f[1];
            second = f[2];
            micro = f[3];
            if (rv < 0) {
                return rv;
            }
            if (tz == end) {
                return rv == 1 ? -5 : 0;
            }
            if (at(tz) == 'Z') {
                tzOffset = 0;
                tzMicro = 0;
                return at(tz + 1) != 0 ? -5 : 1;
            }
            int sign = at(tz) == '-' ? -1 : 1;
            int[] z = new int[4];
            rv = hhmmss(tz + 1, end, z);
            tzOffset = sign * (z[0] * 3600 + z[1] * 60 + z[2]);
            tzMicro = sign * z[3];
            return rv != 0 ? -5 : 1;
        }

        private static final int[] CORRECTION = {100000, 10000, 1000, 100, 10};

        /** parse_hh_mm_ss_ff: HH[:?MM[:?SS[{.,}f...]]] into f; 0 at the end, 1 if more follows, < 0 invalid. */
        private int hhmmss(int p, int end, int[] f) {
            boolean hasSep = true;
            int[] acc = {0};
            for (int i = 0; i < 3; i++) {
                acc[0] = 0;
                p = digits(p, 2, acc);
                if (p < 0) {
                    return -3;
                }
                f[i] = acc[0];
                int c = at(p++);
                if (i == 0) {
                    hasSep = c == ':';
                }
                if (p >= end) {
                    return c != 0 ? 1 : 0;
                } else if (hasSep && c == ':') {
                    continue;
                } else if (c == '.' || c == ',') {
                    break;
                } else if (!hasSep) {
                    p--;
                } else {
                    return -4;
                }
            }
            int toParse = Math.min(end - p, 6);
            acc[0] = 0;
            p = digits(p, toParse, acc);
            if (p < 0) {
                return -3;
            }
            f[3] = toParse < 6 ? acc[0] * CORRECTION[toParse - 1] : acc[0];
            while (isDigit(at(p))) {
                p++; // digits past the sixth are dropped
            }
            return at(p) != 0 ? 1 : 0;
        }
    }
}
