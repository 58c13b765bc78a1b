package io.fraudstream.flink;

import java.nio.charset.Charset;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.java.typeutils.ResultTypeQueryable;

/**
 * Text records back to the bytes they stand for, for {@link OrderAdmission}. The file source
 * decodes lines as ISO-8859-1, so that undecodable UTF-8 survives: encoding them as
 * ISO-8859-1 gives back the exact bytes. The generator hands UTF-8 text.
 */
public class StringToBytes implements MapFunction<String, byte[]>, ResultTypeQueryable<byte[]> {

    private static final long serialVersionUID = 1L;

    private final String charsetName;
    private transient Charset charset;

    /** @param charsetName how the text stands for bytes, e.g. "ISO-8859-1" or "UTF-8" */
    public StringToBytes(String charsetName) {
        Charset.forName(charsetName); // fail now, in the driver, on an unknown name
        this.charsetName = charsetName;
    }

    @Override
    public byte[] map(String value) {
        if (charset == null) {
            charset = Charset.forName(charsetName);
        }
        return value.getBytes(charset);
    }

    @Override
    public TypeInformation<byte[]> getProducedType() {
        return PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO;
    }
}
