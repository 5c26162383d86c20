"""imgexp-app's page script (streamlit runs it on every interaction; start it with imgexp-app).

Layout only: everything shown is computed by imgexp.app's plain modules. The model, the
gallery and the compare threshold are st.cache_resource'd, so after the first run an
interaction costs one forward pass.
"""

import altair as alt
import pandas as pd
import streamlit as st

from imgexp.app.gallery import Gallery, gallery_map, load_gallery, thumbnail
from imgexp.app.inference import load_classifier, load_extractor
from imgexp.app.pairs import Threshold, calibrate_on_val, cosine
from imgexp.app.recognise import embed_one, nearest, recognise
from imgexp.app.settings import AppSettings, read_settings
from imgexp.app.uploads import BadUpload, decode_upload
from imgexp.data import UnreadableImage, load_rgb
from imgexp.data.splits import IMAGE_EXTENSIONS
from imgexp.errors import ImgexpError
from imgexp.features.extractor import FeatureExtractor
from imgexp.models.data_config import input_size
from imgexp.unknown import UNKNOWN

PAGES = ("Recognise", "Compare", "Browse")
UPLOAD_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)


# keyed by the whole settings (a frozen dataclass): another precision is another model
@st.cache_resource(show_spinner="Loading the model…")
def get_model(settings: AppSettings):
    """(model, Inference): Recognise's forward in the app's inference.* settings."""
    return load_classifier(settings)


@st.cache_resource(show_spinner=False)
def get_extractor(settings: AppSettings) -> FeatureExtractor:
    """Gallery, validation images and queries all go through it, in one precision."""
    return load_extractor(settings)


@st.cache_resource(show_spinner="Embedding the gallery (cached on disk for the next start)…")
def get_gallery(settings: AppSettings) -> Gallery:
    return load_gallery(settings.gallery, get_extractor(settings), settings.cache_dir)


@st.cache_resource(show_spinner="Choosing the compare threshold on the validation split…")
def get_threshold(settings: AppSettings) -> Threshold:
    return calibrate_on_val(get_model(settings)[0], get_extractor(settings), settings.cache_dir)


@st.cache_data(show_spinner="Drawing the gallery map…")
def get_map(settings: AppSettings) -> pd.DataFrame:
    return gallery_map(get_gallery(settings), settings.map_csv, settings.max_map_points)


def image_input(key: str, settings: AppSettings, model, gallery: Gallery,
                from_gallery: bool, pick: int = 0):
    """Upload or gallery pick -> (model input pixels, display image, caption), or None."""
    source = st.radio("Image from", ("Upload", "Gallery"), index=int(from_gallery),
                      horizontal=True, key=f"{key}-source")
    if source == "Upload":
        upload = st.file_uploader("Image", type=UPLOAD_TYPES, key=f"{key}-upload")
        if upload is None:
            return None
        try:
            pixels, display = decode_upload(upload.name, upload.getvalue(),
                                            input_size(model),
                                            settings.max_upload_mb)
        except BadUpload as exc:
            st.error(str(exc))
            return None
        return pixels, display, upload.name
    path = st.selectbox("Gallery image", gallery.paths, key=f"{key}-pick",
                        index=pick % len(gallery))
    try:
        file = gallery.root / path
        return load_rgb(file, input_size(model)), thumbnail(file, 384), path
    except UnreadableImage as exc:
        st.error(f"{path}: {exc}")
        return None


def recognise_page(settings: AppSettings, model, gallery: Gallery) -> None:
    picked = image_input("recognise", settings, model, gallery, from_gallery=False)
    if picked is None:
        st.info("Upload an image (or pick one from the gallery) to recognise it.")
        return
    pixels, display, caption = picked
    result = recognise(model, pixels, settings.top_k, settings.unknown_threshold,
                       get_model(settings)[1])
    left, right = st.columns([1, 2])
    left.image(display, caption=caption, width=256)
    right.metric("Prediction", result.label)
    if result.label == UNKNOWN:
        right.warning(f"Top class {result.top[0][0]} has probability {result.confidence:.2f}, "
                      f"below unknown_threshold={settings.unknown_threshold}.")
    right.dataframe(
        pd.DataFrame(result.top, columns=["class", "probability"]), hide_index=True,
        column_config={"probability": st.column_config.ProgressColumn(
            "probability", min_value=0.0, max_value=1.0, format="%.3f")})
    query = embed_one(get_extractor(settings), pixels)
    neighbours = nearest(query, gallery.embeddings, settings.neighbours)
    if neighbours:
        st.subheader(f"{len(neighbours)} nearest gallery images")
        st.caption("cosine distance between " + ("embeddings" if model.head.kind == "embedding"
                                                 else "penultimate features"))
        st.image([thumbnail(gallery.file(i)) for i, _ in neighbours], width=96,
                 caption=[f"{gallery.labels[i] or gallery.paths[i]} · {d:.3f}"
                          for i, d in neighbours])


def compare_page(settings: AppSettings, model, gallery: Gallery) -> None:
    columns = st.columns(2)
    picked = []
    # by default the first and the last gallery images (different classes in a class gallery)
    for column, key, pick in zip(columns, ("a", "b"), (0, -1), strict=True):
        with column:
            picked.append(image_input(f"compare-{key}", settings, model, gallery, True, pick))
            if picked[-1] is not None:
                st.image(picked[-1][1], caption=picked[-1][2], width=256)
    if None in picked:
        st.info("Choose two images to compare.")
        return
    extractor = get_extractor(settings)
    similarity = cosine(embed_one(extractor, picked[0][0]), embed_one(extractor, picked[1][0]))
    st.metric("Cosine similarity", f"{similarity:.3f}")
    if settings.compare_threshold is not None:
        threshold = Threshold(settings.compare_threshold, float("nan"), 0, "config")
    else:
        try:
            threshold = get_threshold(settings)
        except ImgexpError as exc:
            st.warning(f"No same-class verdict: {exc}")
            return
    same = similarity >= threshold.value
    (st.success if same else st.warning)(
        f"{'Same class' if same else 'Different classes'}: similarity {similarity:.3f} "
        f"{'>=' if same else '<'} threshold {threshold.value:.3f}")
    if threshold.source == "val split":
        st.caption(f"Threshold chosen on {threshold.pairs} pairs of validation images "
                   f"(balanced accuracy {threshold.balanced_accuracy:.3f}).")


def browse_page(settings: AppSettings, gallery: Gallery) -> None:
    points = get_map(settings)
    source = ("the map CSV " + settings.map_csv if settings.map_csv
              else "a PCA of the gallery embeddings")
    st.caption(f"{len(points)} of {len(gallery)} gallery images placed by {source}; "
               "hover a point to see the image.")
    chart = alt.Chart(points).mark_circle(size=70, opacity=0.8).encode(
        # padding: points on the edge of the domain are drawn whole
        x=alt.X("x", title="1st axis", scale=alt.Scale(zero=False, padding=12)),
        y=alt.Y("y", title="2nd axis", scale=alt.Scale(zero=False, padding=12)),
        color=alt.Color("label", title="class"),
        # vega-tooltip renders a field named "image" as a picture
        tooltip=["image", "path", "label"])
    st.altair_chart(chart.interactive(), width="stretch")


def main() -> None:
    st.set_page_config(page_title="imgexp", layout="wide")
    try:
        settings = read_settings()
        model = get_model(settings)[0]
        gallery = get_gallery(settings)
    except ImgexpError as exc:
        st.error(str(exc))
        st.stop()
    page = st.sidebar.radio("Page", PAGES)
    st.sidebar.caption(f"checkpoint `{settings.ckpt_path}`  \n{len(model.class_names)} classes, "
                       f"{model.head.kind} head, {model.config['data']['image_size']} px  \n"
                       f"gallery: {len(gallery)} images")
    if gallery.skipped:
        st.sidebar.warning(f"{len(gallery.skipped)} unreadable gallery file(s) left out")
    st.title(page)
    if page == "Recognise":
        recognise_page(settings, model, gallery)
    elif page == "Compare":
        compare_page(settings, model, gallery)
    else:
        browse_page(settings, gallery)


main()
