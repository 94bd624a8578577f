import azkaban.project.DirectoryYamlFlowLoader;
import azkaban.project.Project;
import azkaban.utils.Props;
import java.io.File;
import java.util.TreeSet;

/**
 * Loads each project directory given on the command line with Azkaban's own Flow 2.0 loader and
 * prints one JSON line per directory: {"project": DIR, "flows": [...], "errors": [...]}, both sorted.
 * One JVM for many projects: the tests load a whole corpus at once.
 */
public final class LoadProjects {

  private LoadProjects() {
  }

  public static void main(final String[] args) {
    for (final String dir : args) {
      final DirectoryYamlFlowLoader loader = new DirectoryYamlFlowLoader(new Props());
      loader.loadProjectFlow(new Project(1, "project"), new File(dir));
      System.out.println("{\"project\": " + quote(dir) + ", \"flows\": " + list(new TreeSet<>(loader.getFlowMap().keySet()))
          + ", \"errors\": " + list(new TreeSet<>(loader.getErrors())) + "}");
    }
  }

  private static String list(final Iterable<String> items) {
    final StringBuilder out = new StringBuilder("[");
    for (final String item : items) {
      out.append(out.length() > 1 ? ", " : "").append(quote(item));
    }
    return out.append("]").toString();
  }

  private static String quote(final String text) {
    final StringBuilder out = new StringBuilder("\"");
    for (final char c : text.toCharArray()) {
      if (c == '"' || c == '\\') {
        out.append('\\').append(c);
      } else if (c < 0x20) {
        out.append(String.format("\\u%04x", (int) c));
      } else {
        out.append(c);
      }
    }
    return out.append('"').toString();
  }
}
