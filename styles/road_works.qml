<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.34" styleCategories="Symbology|Labeling">
  <renderer-v2 type="singleSymbol"><symbols><symbol name="0" type="marker" alpha="1"><layer class="SimpleMarker"><Option type="Map"><Option name="color" value="255,127,0,255" type="QString"/></Option></layer></symbol></symbols></renderer-v2>
</qgis>
