package azkaban.spi;

/** The one class of azkaban-spi the 3.58.0 loader needs (that artifact is not on Maven Central). */
public class AzkabanException extends RuntimeException {

  public AzkabanException(final String message) {
    super(message);
  }

  public AzkabanException(final Throwable cause) {
    super(cause);
  }

  public AzkabanException(final String message, final Throwable cause) {
    super(message, cause);
  }
}
